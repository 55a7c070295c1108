package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDebugPodLifecycle checks what a real kubelet and the API's admission
// make of the debug pod itself, in one kube-proxy mode (none of it depends
// on the mode):
//
//   - deadline-after-sigkill: the plugin is killed (SIGKILL, no clean-up)
//     while its dump runs; its pod stays until the kubelet enforces
//     activeDeadlineSeconds (the pod fails with DeadlineExceeded and its
//     containers are stopped), and then `kubectl trace-svc cleanup`
//     deletes it;
//   - limitrange-with-defaults and quota-without-defaults: a debug
//     namespace with a ResourceQuota on pods, requests and limits, with and
//     without a LimitRange. The debug pod must be admitted and run in both.
//     What its spec must satisfy for that: requests and limits for cpu and
//     memory, each within the LimitRange's min and max (1m–500m cpu,
//     4Mi–256Mi memory); where no LimitRange fills in defaults, the pod
//     must declare them itself. A spec without limits is refused by the
//     second namespace, and then the plugin must at least say the quota is
//     why (issue 19 gives the pod requests and limits).
//
// The two namespaces are traced while the killed plugin's pod waits for its
// deadline.
func TestDebugPodLifecycle(t *testing.T) {
	setup(t).inMode(t, "life", "iptables", func(t *testing.T, c *cluster, mode string) {
		n1 := c.addNode("node1", node1IP, node1Pods)
		c.addPod(n1, e2eNS, podName, podIP, echoLabels)
		c.importImage(n1, slowImage)
		np := c.nodePortService("echo-cluster", "echo", "Cluster", true)
		c.settle(map[*node]func(string) string{n1: wantInRules(fmt.Sprint(np), podIP)})

		// The plugin killed while its dump runs (slowImage sleeps first).
		const deadlineNS = "e2e-deadline"
		c.namespace(deadlineNS)
		p := c.startPlugin(t, "echo-cluster", "-o", "json", "--image", slowImage, "--debug-namespace", deadlineNS)
		for begin := time.Now(); len(c.slowDumps(n1)) == 0; {
			if time.Since(begin) > 60*time.Second {
				t.Fatalf("the dump script is not running in the debug pod after 60s; plugin stderr:\n%s", p.stderr.String())
			}
			p.mustRun(t, 100*time.Millisecond)
		}
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		left := c.debugPodsIn(deadlineNS)
		if len(left) != 1 {
			t.Fatalf("after SIGKILL: debug pods %v in %s, want the one the plugin could not delete", left, deadlineNS)
		}
		kept := strings.TrimPrefix(left[0], deadlineNS+"/")
		killed := time.Now()
		spec := c.debugPodSpec(deadlineNS, kept)
		t.Logf("plugin killed; its debug pod %s stays (activeDeadlineSeconds %d, resources %s, seccomp %q)",
			left[0], spec.deadline, spec.resources, spec.seccomp)
		c.wantSeccomp(t, n1, spec)

		t.Run("limitrange-with-defaults", func(t *testing.T) {
			const ns = "e2e-limited"
			c.limitedNamespace(ns, `{"cpu":"2","memory":"1Gi"}`)
			c.trace(t, "echo-cluster", "--debug-namespace", ns)
			t.Logf("quota %s after the trace: %s", ns, c.quotaUsed(ns))
			// One debug pod (one node, collected once): admitted, and
			// counted against the quota with limits (its own, or the
			// LimitRange's defaults).
			used := " " + c.quotaUsed(ns) + " "
			if !strings.Contains(used, " pods=1 ") || strings.Contains(used, " limits.cpu=0 ") || strings.Contains(used, " limits.memory=0 ") {
				t.Errorf("quota %s: used%s, want pods=1 with limits: the debug pod was not counted, or has no limits", ns, used)
			}
		})

		t.Run("limitrange-too-small", func(t *testing.T) {
			// A LimitRange whose maximum is below what the debug pod
			// declares (500m and 256Mi against its 1 CPU and 512Mi): the
			// namespace refuses it, and the plugin must say the limit
			// range is why and what the pod asks for.
			const ns = "e2e-small"
			c.limitedNamespace(ns, `{"cpu":"500m","memory":"256Mi"}`)
			run := c.startPlugin(t, "echo-cluster", "-o", "json", "--debug-namespace", ns)
			err := <-run.exited
			c.wantDebugPodsGone(t, ns)
			var doc pathDoc
			if jerr := json.Unmarshal([]byte(run.stdout.String()), &doc); err != nil || jerr != nil || len(doc.Nodes) != 1 {
				t.Fatalf("plugin: exit %v, output %v:\n%s\nstderr:\n%s", err, jerr, run.stdout.String(), run.stderr.String())
			}
			nodeErr := doc.Nodes[0].Error
			if !strings.Contains(nodeErr, "LimitRange") || !strings.Contains(nodeErr, "limited to cpu") {
				t.Errorf("a LimitRange below the debug pod's limits must refuse it and the plugin must say so; node1's error: %q", nodeErr)
			}
			t.Logf("refused, as it must be; the plugin says: %s", nodeErr)
		})

		t.Run("quota-without-defaults", func(t *testing.T) {
			const ns = "e2e-quota-strict"
			c.limitedNamespace(ns, "")
			run := c.startPlugin(t, "echo-cluster", "-o", "json", "--debug-namespace", ns)
			err := <-run.exited
			c.wantDebugPodsGone(t, ns)
			var doc pathDoc
			if jerr := json.Unmarshal([]byte(run.stdout.String()), &doc); err != nil || jerr != nil || len(doc.Nodes) != 1 {
				t.Fatalf("plugin: exit %v, output %v:\n%s\nstderr:\n%s", err, jerr, run.stdout.String(), run.stderr.String())
			}
			nodeErr := doc.Nodes[0].Error
			if spec.declaresLimits() {
				// What the debug pod must satisfy: admitted, and traced.
				if nodeErr != "" {
					t.Errorf("the debug pod declares %s but a namespace with a quota on requests and limits rejects it: %s", spec.resources, nodeErr)
				}
				return
			}
			// Today's spec declares no limits: the namespace refuses it, and
			// the plugin must say the quota is why.
			if !strings.Contains(nodeErr, "quota") {
				t.Errorf("the debug pod declares no limits (%s), so a quota on limits with no LimitRange must refuse it, and the plugin must say so; node1's error: %q", spec.resources, nodeErr)
			}
			t.Logf("the debug pod declares no limits (%s): refused, as it must be; the plugin says: %s", spec.resources, nodeErr)
		})

		t.Run("deadline-after-sigkill", func(t *testing.T) {
			wait := time.Duration(spec.deadline)*time.Second + 60*time.Second
			var st podStatus
			for {
				var found bool
				st, found = c.getPod(deadlineNS, kept)
				if !found {
					t.Fatalf("debug pod %s/%s disappeared before its deadline was enforced", deadlineNS, kept)
				}
				if st.Status.Phase == "Failed" {
					break
				}
				if time.Since(killed) > wait {
					t.Fatalf("debug pod %s/%s still %s %v after the plugin was killed (activeDeadlineSeconds %d)", deadlineNS, kept, st.Status.Phase, wait, spec.deadline)
				}
				time.Sleep(time.Second)
			}
			t.Logf("the kubelet failed %s/%s %v after the plugin was killed: %s %s", deadlineNS, kept, time.Since(killed).Round(time.Second), st.Status.Reason, st.Status.Message)
			if st.Status.Reason != "DeadlineExceeded" {
				t.Errorf("debug pod %s failed with reason %q, want DeadlineExceeded", kept, st.Status.Reason)
			}
			// Its containers are stopped: nothing of it runs any more.
			for begin := time.Now(); ; time.Sleep(200 * time.Millisecond) {
				running := c.runtimeDebugContainers(deadlineNS, true)
				if len(running) == 0 && len(c.slowDumps(n1)) == 0 {
					break
				}
				if time.Since(begin) > runtimeStopWait {
					t.Fatalf("the kubelet failed the pod but its containers still run: %v (dump pids %v)", running, c.slowDumps(n1))
				}
			}

			out, err := exec.Command(c.plugin, "cleanup", "--debug-namespace", deadlineNS, "--kubeconfig", c.adminKubeconfig).CombinedOutput()
			t.Logf("kubectl trace-svc cleanup: %v\n%s", err, out)
			if err != nil || !strings.Contains(string(out), kept) {
				t.Errorf("cleanup did not delete %s: %v\n%s", kept, err, out)
			}
			if left := c.debugPodsIn(deadlineNS); len(left) > 0 {
				t.Errorf("debug pods left after cleanup: %v", left)
			}
		})
	})
}

// namespace creates a namespace.
func (c *cluster) namespace(name string) {
	c.t.Helper()
	c.create("/api/v1/namespaces", fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q}}`, name))
}

// limitedNamespace creates a namespace with a ResourceQuota on pods,
// requests and limits and, when limitRangeMax is set (JSON: {"cpu":...,
// "memory":...}), a LimitRange with that maximum and a minimum and default requests and limits for containers. (A LimitRange
// with a max always has default limits: the API defaults them to the max.
// Without one, nothing fills in what a pod leaves out.) No
// controller-manager runs: the quota's status is set here, and its usage
// only grows (nothing recounts it when pods go).
func (c *cluster) limitedNamespace(name, limitRangeMax string) {
	c.t.Helper()
	c.namespace(name)
	if limitRangeMax != "" {
		c.create("/api/v1/namespaces/"+name+"/limitranges", `{"apiVersion":"v1","kind":"LimitRange",
		"metadata":{"name":"limits"},"spec":{"limits":[{"type":"Container",
		  "max":`+limitRangeMax+`,"min":{"cpu":"1m","memory":"4Mi"},
		  "default":{"cpu":"100m","memory":"64Mi"},"defaultRequest":{"cpu":"10m","memory":"32Mi"}}]}}`)
	}
	const hard = `{"pods":"10","requests.cpu":"1","requests.memory":"1Gi","limits.cpu":"2","limits.memory":"2Gi"}`
	c.create("/api/v1/namespaces/"+name+"/resourcequotas", `{"apiVersion":"v1","kind":"ResourceQuota",
		"metadata":{"name":"quota"},"spec":{"hard":`+hard+`}}`)
	c.patchStatus("/api/v1/namespaces/"+name+"/resourcequotas/quota/status", `{"status":{"hard":`+hard+`,
		"used":{"pods":"0","requests.cpu":"0","requests.memory":"0","limits.cpu":"0","limits.memory":"0"}}}`)
}

// quotaUsed returns the namespace quota's usage, as sorted key=value.
func (c *cluster) quotaUsed(ns string) string {
	c.t.Helper()
	code, body, err := c.do("GET", "/api/v1/namespaces/"+ns+"/resourcequotas/quota", nil)
	if err != nil || code != 200 {
		c.t.Fatalf("GET quota %s: %d %v\n%s", ns, code, err, body)
	}
	var q struct {
		Status struct {
			Used map[string]string `json:"used"`
		} `json:"status"`
	}
	json.Unmarshal(body, &q)
	var kv []string
	for k, v := range q.Status.Used {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return strings.Join(kv, " ")
}

// debugSpec is what the suite reads of a debug pod's spec as the plugin
// made it.
type debugSpec struct {
	deadline  int64
	resources string // requests and limits, as JSON
	limits    map[string]string
	requests  map[string]string
	seccomp   string // the container's or the pod's seccompProfile type
}

// declaresLimits tells whether the pod declares requests and limits for
// both cpu and memory.
func (s debugSpec) declaresLimits() bool {
	return s.limits["cpu"] != "" && s.limits["memory"] != "" && s.requests["cpu"] != "" && s.requests["memory"] != ""
}

// debugPodSpec reads a debug pod's deadline, resources and seccomp profile.
func (c *cluster) debugPodSpec(ns, name string) debugSpec {
	c.t.Helper()
	code, body, err := c.do("GET", "/api/v1/namespaces/"+ns+"/pods/"+name, nil)
	if err != nil || code != 200 {
		c.t.Fatalf("GET pod %s/%s: %d %v", ns, name, code, err)
	}
	type profile struct {
		SeccompProfile *struct {
			Type string `json:"type"`
		} `json:"seccompProfile"`
	}
	var pod struct {
		Spec struct {
			ActiveDeadlineSeconds int64   `json:"activeDeadlineSeconds"`
			SecurityContext       profile `json:"securityContext"`
			Containers            []struct {
				Resources       json.RawMessage `json:"resources"`
				SecurityContext profile         `json:"securityContext"`
			} `json:"containers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &pod); err != nil || len(pod.Spec.Containers) == 0 {
		c.t.Fatalf("pod %s/%s: %v\n%s", ns, name, err, body)
	}
	s := debugSpec{deadline: pod.Spec.ActiveDeadlineSeconds, resources: string(pod.Spec.Containers[0].Resources)}
	var res struct {
		Limits   map[string]string `json:"limits"`
		Requests map[string]string `json:"requests"`
	}
	json.Unmarshal(pod.Spec.Containers[0].Resources, &res)
	s.limits, s.requests = res.Limits, res.Requests
	if p := pod.Spec.SecurityContext.SeccompProfile; p != nil {
		s.seccomp = p.Type
	}
	if p := pod.Spec.Containers[0].SecurityContext.SeccompProfile; p != nil {
		s.seccomp = p.Type
	}
	return s
}

// wantSeccomp checks that the debug pod's container process runs under the
// seccomp filter its spec asks for (RuntimeDefault: containerd's default
// profile, "Seccomp: 2" in /proc/PID/status); a spec without a profile
// runs unconfined here (the kubelet's seccompDefault is off).
func (c *cluster) wantSeccomp(t *testing.T, n *node, spec debugSpec) {
	t.Helper()
	want := "0"
	if spec.seccomp == "RuntimeDefault" {
		want = "2"
	}
	for _, pid := range cgroupPIDs(n.cgroup) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if string(b) != fmt.Sprintf("sleep\x00%d\x00", spec.deadline) {
			continue
		}
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
				if got := strings.TrimSpace(v); got != want {
					t.Errorf("debug pod's process (pid %d) runs with Seccomp: %s, want %s for seccompProfile %q", pid, got, want, spec.seccomp)
				} else {
					t.Logf("debug pod's process (pid %d) runs with Seccomp: %s (seccompProfile %q)", pid, got, spec.seccomp)
				}
				return
			}
		}
	}
	t.Errorf("no debug pod process (sleep %d) found on %s", spec.deadline, n.name)
}
