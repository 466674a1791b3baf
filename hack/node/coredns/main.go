// CoreDNS with the plugins the local node's Corefile uses (bandsy_dev/node_config.py), and no
// others: the full build compiles every plugin's dependencies (cloud DNS providers, tracing,
// etcd, ...) and took about 5 of the cold CI run's minutes.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order CoreDNS's plugin.cfg gives these plugins: a Corefile's order does not matter.
var directives = []string{"bind", "ready", "errors", "cache", "kubernetes"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
