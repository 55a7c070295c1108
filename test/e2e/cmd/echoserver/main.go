// Command echoserver is the end-to-end suite's pod: it answers every HTTP
// request with its name and the remote address it saw, so a test can tell
// whether the node masqueraded (SNAT) the connection.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
)

func main() {
	name := flag.String("name", "echo", "name to answer with")
	listen := flag.String("listen", ":8080", "address to listen on")
	flag.Parse()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "name=%s remote=%s\n", *name, r.RemoteAddr)
	})
	log.Fatal(http.ListenAndServe(*listen, nil))
}
