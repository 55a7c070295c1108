// Command pause is the suite's pod sandbox image: the process that holds a
// pod's namespaces while its containers come and go. As PID 1 of the pod it
// reaps the orphans it inherits and exits on SIGINT or SIGTERM, like the
// pause image a cluster pulls from its registry (which this suite has not).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
