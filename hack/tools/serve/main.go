// Command serve serves a directory over HTTP on a free loopback port, for
// "make release-check" (krew installs the snapshot's archives from it). It
// prints the port on its first line, and stops by itself after -timeout.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	dir := flag.String("dir", ".", "directory to serve")
	timeout := flag.Duration("timeout", 15*time.Minute, "exit after this long")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	time.AfterFunc(*timeout, func() {
		fmt.Fprintln(os.Stderr, "serve: timeout, exiting")
		os.Exit(0)
	})
	log.Fatal(http.Serve(ln, http.FileServer(http.Dir(*dir))))
}
