// Command podcheck proves from inside a pod that the harness's databases are reachable the way
// a service would use them. Standard library only, so it builds from the module proxy alone.
//
//	podcheck pg SQL   PostgreSQL over TLS with full verification (the server name is PGHOST,
//	                  the CA PGSSLROOTCERT), SCRAM-SHA-256 as PGUSER/PGPASSWORD on PGDATABASE;
//	                  prints the first row of SQL as "a|b|c".
//	podcheck redis    AUTH as REDIS_USER/REDIS_PASSWORD at REDIS_ADDR, then PING; prints PONG.
//	podcheck kube P   GET P from the API server the way an in-cluster client does (the
//	                  kubernetes Service, the pod's service-account token and CA); prints the
//	                  status code, then the body.
//	podcheck get URL  GET URL (names resolved through the pod's DNS); prints the status code,
//	                  then the body; exit 1 when the connection fails or times out (2 s).
package main

import (
	"bufio"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const timeout = 5 * time.Second

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "pg":
		err = postgres(os.Args[2])
	case len(os.Args) == 2 && os.Args[1] == "redis":
		err = redisPing()
	case len(os.Args) == 3 && os.Args[1] == "kube":
		err = kubeGet(os.Args[2])
	case len(os.Args) == 3 && os.Args[1] == "get":
		err = get(os.Args[2])
	default:
		err = errors.New("usage: podcheck pg SQL | podcheck redis | podcheck kube PATH | podcheck get URL")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "podcheck:", err)
		os.Exit(1)
	}
}

func get(url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return printResponse(resp)
}

func printResponse(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Printf("%d\n%s", resp.StatusCode, body)
	return nil
}

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func kubeGet(path string) error {
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return errors.New("no certificate in the service account's ca.crt")
	}
	host := net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
	client := &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
	}
	req, err := http.NewRequest(http.MethodGet, "https://"+host+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return printResponse(resp)
}

func redisPing() error {
	conn, err := net.DialTimeout("tcp", os.Getenv("REDIS_ADDR"), timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	cmd := fmt.Sprintf("*3\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n",
		len(os.Getenv("REDIS_USER")), os.Getenv("REDIS_USER"),
		len(os.Getenv("REDIS_PASSWORD")), os.Getenv("REDIS_PASSWORD"))
	if _, err := io.WriteString(conn, cmd); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	for _, want := range []string{"+OK", "+PONG"} {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) != want {
			return fmt.Errorf("redis answered %q, expected %q", strings.TrimSpace(line), want)
		}
	}
	fmt.Println("PONG")
	return nil
}

// pgConn speaks the PostgreSQL v3 protocol over an established TLS connection.
type pgConn struct {
	conn *tls.Conn
	r    *bufio.Reader
}

func (c *pgConn) send(kind byte, payload []byte) error {
	msg := []byte{}
	if kind != 0 {
		msg = append(msg, kind)
	}
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(payload)+4))
	_, err := c.conn.Write(append(msg, payload...))
	return err
}

// receive returns the next message, turning an ErrorResponse into an error.
func (c *pgConn) receive() (byte, []byte, error) {
	header := make([]byte, 5)
	if _, err := io.ReadFull(c.r, header); err != nil {
		return 0, nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(header[1:])-4)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	if header[0] == 'E' {
		return 0, nil, fmt.Errorf("server error: %s", errorMessage(body))
	}
	return header[0], body, nil
}

func errorMessage(body []byte) string {
	parts := []string{}
	for _, field := range strings.Split(string(body), "\x00") {
		if len(field) > 1 && (field[0] == 'S' || field[0] == 'M') {
			parts = append(parts, field[1:])
		}
	}
	return strings.Join(parts, ": ")
}

// expectAuth reads the next Authentication message, checks its code and returns its data.
func (c *pgConn) expectAuth(code uint32) ([]byte, error) {
	kind, body, err := c.receive()
	if err != nil {
		return nil, err
	}
	if kind != 'R' || len(body) < 4 || binary.BigEndian.Uint32(body) != code {
		return nil, fmt.Errorf("expected authentication message %d, got %q", code, kind)
	}
	return body[4:], nil
}

func dialPostgres(host, port, caFile string) (*pgConn, error) {
	raw, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), timeout)
	if err != nil {
		return nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(3 * timeout))
	// SSLRequest: the server answers 'S' before the TLS handshake.
	if _, err := raw.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		return nil, err
	}
	answer := make([]byte, 1)
	if _, err := io.ReadFull(raw, answer); err != nil || answer[0] != 'S' {
		return nil, fmt.Errorf("server refused TLS (%q, %v)", answer, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + caFile)
	}
	// verify-full: the chain and the server name (an IP SAN when host is an address).
	conn := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12})
	if err := conn.Handshake(); err != nil {
		return nil, err
	}
	return &pgConn{conn: conn, r: bufio.NewReader(conn)}, nil
}

func hmacSHA256(key []byte, data string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(data))
	return mac.Sum(nil)
}

// scram authenticates with SCRAM-SHA-256 (RFC 5802/7677) and checks the server's signature.
func (c *pgConn) scram(password string) error {
	nonceBytes := make([]byte, 18)
	if _, err := rand.Read(nonceBytes); err != nil {
		return err
	}
	clientFirstBare := "n=,r=" + base64.StdEncoding.EncodeToString(nonceBytes)
	clientFirst := "n,," + clientFirstBare
	initial := append([]byte("SCRAM-SHA-256\x00"), binary.BigEndian.AppendUint32(nil, uint32(len(clientFirst)))...)
	if err := c.send('p', append(initial, clientFirst...)); err != nil {
		return err
	}
	serverFirstBytes, err := c.expectAuth(11)
	if err != nil {
		return err
	}
	serverFirst := string(serverFirstBytes)
	attrs := map[string]string{}
	for _, kv := range strings.Split(serverFirst, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			attrs[k] = v
		}
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil {
		return err
	}
	iterations, err := strconv.Atoi(attrs["i"])
	if err != nil {
		return err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return err
	}
	clientFinalBare := "c=biws,r=" + attrs["r"]
	authMessage := clientFirstBare + "," + serverFirst + "," + clientFinalBare
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	proof := hmacSHA256(storedKey[:], authMessage)
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	final := clientFinalBare + ",p=" + base64.StdEncoding.EncodeToString(proof)
	if err := c.send('p', []byte(final)); err != nil {
		return err
	}
	serverFinal, err := c.expectAuth(12)
	if err != nil {
		return err
	}
	want := "v=" + base64.StdEncoding.EncodeToString(hmacSHA256(hmacSHA256(salted, "Server Key"), authMessage))
	if string(serverFinal) != want {
		return errors.New("the server's SCRAM signature does not match")
	}
	_, err = c.expectAuth(0)
	return err
}

func postgres(sql string) error {
	c, err := dialPostgres(os.Getenv("PGHOST"), os.Getenv("PGPORT"), os.Getenv("PGSSLROOTCERT"))
	if err != nil {
		return err
	}
	defer c.conn.Close()
	startup := binary.BigEndian.AppendUint32(nil, 196608) // protocol 3.0
	startup = append(startup, "user\x00"+os.Getenv("PGUSER")+"\x00database\x00"+os.Getenv("PGDATABASE")+"\x00\x00"...)
	if err := c.send(0, startup); err != nil {
		return err
	}
	if _, err := c.expectAuth(10); err != nil { // AuthenticationSASL
		return err
	}
	if err := c.scram(os.Getenv("PGPASSWORD")); err != nil {
		return err
	}
	if err := c.waitReady(); err != nil {
		return err
	}
	if err := c.send('Q', append([]byte(sql), 0)); err != nil {
		return err
	}
	var row []string
	for {
		kind, body, err := c.receive()
		if err != nil {
			return err
		}
		switch kind {
		case 'D':
			if row == nil {
				row = dataRow(body)
			}
		case 'Z':
			fmt.Println(strings.Join(row, "|"))
			return c.send('X', nil)
		}
	}
}

func (c *pgConn) waitReady() error {
	for {
		kind, _, err := c.receive()
		if err != nil || kind == 'Z' {
			return err
		}
	}
}

func dataRow(body []byte) []string {
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	values := make([]string, 0, n)
	for range n {
		size := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if size < 0 {
			values = append(values, "NULL")
			continue
		}
		values = append(values, string(body[:size]))
		body = body[size:]
	}
	return values
}
