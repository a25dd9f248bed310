// Command etcd is the test bed's etcd: the upstream server (go.etcd.io/etcd/server/v3) at the
// version go.mod pins, built from the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
