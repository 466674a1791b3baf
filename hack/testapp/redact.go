package main

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// sensitive reports whether /env hides a variable's value: its name says it holds a credential,
// or a URL that may carry one. Case-insensitive, so `database_url` is hidden like `DATABASE_URL`.
func sensitive(key string) bool {
	k := strings.ToUpper(key)
	for _, word := range []string{"PASSWORD", "SECRET", "TOKEN", "KEY", "URL"} {
		if strings.Contains(k, word) {
			return true
		}
	}
	return false
}

// A URL's user information up to its last '@' (an unencoded '@' or '/' in a password makes the URL
// unparseable, yet it must still be hidden). Backticks and quotes end it: pgx and net/url quote URLs.
var urlCredentials = regexp.MustCompile("([A-Za-z][A-Za-z0-9+.-]*://)[^\\s\"'`<>]*@")

// secretsOf lists what no log line may show: the values of credential variables and the password
// of every URL in the environment, as written and percent-decoded; longest first, so a secret
// that contains another is replaced whole.
func secretsOf(env environment) []string {
	seen := map[string]bool{}
	for key, value := range env {
		k := strings.ToUpper(key)
		if strings.Contains(k, "PASSWORD") || strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN") {
			seen[value] = true
		}
		for _, m := range urlCredentials.FindAllStringSubmatch(value, -1) {
			info := strings.TrimSuffix(strings.TrimPrefix(m[0], m[1]), "@")
			if _, password, ok := strings.Cut(info, ":"); ok {
				seen[password] = true
				if decoded, err := url.PathUnescape(password); err == nil {
					seen[decoded] = true
				}
			}
		}
	}
	delete(seen, "")
	secrets := make([]string, 0, len(seen))
	for s := range seen {
		secrets = append(secrets, s)
	}
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	return secrets
}

// redact hides the given secrets and the user information of any URL in s.
func redact(s string, secrets []string) string {
	for _, secret := range secrets {
		s = strings.ReplaceAll(s, secret, "***")
	}
	return urlCredentials.ReplaceAllString(s, "${1}***@")
}
