// Command echoserver is the end-to-end suite's pod: it answers every HTTP
// request with its name, the port it was reached on and the remote address
// it saw, so a test can tell which pod and port a Service sent it to and
// whether the node masqueraded (SNAT) the connection.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
)

func main() {
	name := flag.String("name", "echo", "name to answer with")
	listen := flag.String("listen", ":8080", "addresses to listen on, comma-separated")
	flag.Parse()
	addrs := strings.Split(*listen, ",")
	errs := make(chan error, len(addrs))
	for _, addr := range addrs {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			log.Fatalf("-listen %q: %v", addr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "name=%s port=%s remote=%s\n", *name, port, r.RemoteAddr)
		})
		go func() { errs <- http.ListenAndServe(addr, mux) }()
	}
	log.Fatal(<-errs)
}
