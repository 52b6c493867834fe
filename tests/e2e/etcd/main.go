// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 for the
// sodguard end-to-end test bed (see tests/e2e/build.sh).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
