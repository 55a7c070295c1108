package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCleanup runs the plugin's cleanup against a real kube-apiserver: of
// the debug pods in the namespace it deletes the one that finished and the
// one past its deadline (an earlier version's, without the created-by
// annotation), keeps the one a trace may be using right now and says who
// made it, and leaves other pods alone; cleanup --all then deletes the
// running one too. No kubelet or kube-proxy is needed: the pods' phases are
// written through the status subresource, as a kubelet would.
func TestCleanup(t *testing.T) {
	s := setup(t)
	c := newClusterTagged(t, s.bin, "cln-")
	c.plugin = s.plugin
	c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"`+e2eNS+`"}}`)

	now := time.Now().UTC()
	pod := func(name string, debug bool, annotations map[string]string, phase string, started time.Time) {
		labels := map[string]string{"app": "web"}
		if debug {
			labels = map[string]string{"app.kubernetes.io/name": "kubectl-trace-svc", "trace-svc.io/debug-pod": "true"}
		}
		obj, _ := json.Marshal(map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": name, "labels": labels, "annotations": annotations},
			"spec": map[string]any{
				"nodeName": "node-1", "hostNetwork": true, "restartPolicy": "Never", "activeDeadlineSeconds": 120,
				"containers": []any{map[string]any{"name": "dump", "image": "e2e.local/no-pull", "command": []string{"sleep", "120"}}},
			},
		})
		c.create("/api/v1/namespaces/"+e2eNS+"/pods", string(obj))
		c.patchStatus("/api/v1/namespaces/"+e2eNS+"/pods/"+name+"/status",
			fmt.Sprintf(`{"status":{"phase":%q,"startTime":%q}}`, phase, started.Format(time.RFC3339)))
	}
	byAlice := map[string]string{"trace-svc.io/node": "node-1",
		"trace-svc.io/created-by": `{"user":"alice","host":"laptop-7","time":"` + now.Format(time.RFC3339) + `"}`}
	pod("trace-svc-finished", true, byAlice, "Succeeded", now.Add(-30*time.Second))
	pod("trace-svc-running", true, byAlice, "Running", now.Add(-10*time.Second))
	pod("trace-svc-old-version", true, nil, "Running", now.Add(-10*time.Minute))
	pod("web", false, nil, "Running", now.Add(-time.Hour))

	out := string(c.runPlugin(t, "cleanup", "--debug-namespace", e2eNS, "--kubeconfig", c.adminKubeconfig))
	t.Logf("cleanup:\n%s", out)
	for _, want := range []string{
		"deleted pod e2e/trace-svc-finished (node node-1, made by alice on laptop-7 at " + now.Format(time.RFC3339) + "): it finished (Succeeded)\n",
		// (the seconds depend on how long the plugin took to start)
		"deleted pod e2e/trace-svc-old-version (node node-1, maker not recorded): its deadline of 2m0s passed 8m",
		"kept pod e2e/trace-svc-running (node node-1, made by alice on laptop-7 at " + now.Format(time.RFC3339) + "): it is running and inside its deadline (",
		"kept 1 debug pod(s) a trace may still be using; kubectl trace-svc cleanup --all deletes them too\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("cleanup output lacks %q", want)
		}
	}
	if got, want := c.podNames(e2eNS), []string{"trace-svc-running", "web"}; !slices.Equal(got, want) {
		t.Errorf("pods after cleanup %v, want %v", got, want)
	}

	out = string(c.runPlugin(t, "cleanup", "--all", "--debug-namespace", e2eNS, "--kubeconfig", c.adminKubeconfig))
	t.Logf("cleanup --all:\n%s", out)
	if !strings.Contains(out, "deleted pod e2e/trace-svc-running (node node-1, made by alice on laptop-7 at "+now.Format(time.RFC3339)+"): --all: it is running") {
		t.Errorf("cleanup --all did not delete the running pod:\n%s", out)
	}
	if got, want := c.podNames(e2eNS), []string{"web"}; !slices.Equal(got, want) {
		t.Errorf("pods after cleanup --all %v, want %v", got, want)
	}
}

// podNames lists the names of the pods in namespace ns, sorted.
func (c *cluster) podNames(ns string) []string {
	c.t.Helper()
	code, body, err := c.do("GET", "/api/v1/namespaces/"+ns+"/pods", nil)
	if err != nil || code != 200 {
		c.t.Fatalf("list pods: %d %v\n%s", code, err, body)
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		c.t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Metadata.Name)
	}
	slices.Sort(names)
	return names
}
