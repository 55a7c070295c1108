package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAdmissionPolicy applies the ValidatingAdmissionPolicy of
// docs/rbac.md, as written there, to a real kube-apiserver, and checks that
// in the debug namespace it admits the plugin's debug pod exactly as the
// plugin makes it (collectors/debugpod/testdata/debug-pod.json) and rejects
// every way of leaving its shape, while pods elsewhere are not its business.
func TestAdmissionPolicy(t *testing.T) {
	s := setup(t)
	c := newClusterTagged(t, s.bin, "adm-")
	for _, ns := range []string{"trace-svc", "elsewhere"} {
		c.create("/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"`+ns+`"}}`)
	}
	for _, doc := range policyDocs(t) {
		kind := regexp.MustCompile(`(?m)^kind: (\S+)`).FindStringSubmatch(doc)[1]
		path := map[string]string{
			"ValidatingAdmissionPolicy":        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
			"ValidatingAdmissionPolicyBinding": "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
		}[kind]
		if code, body := c.postYAML(path, doc); code != http.StatusCreated {
			t.Fatalf("create %s from docs/rbac.md: %d\n%s", kind, code, body)
		}
	}

	raw, err := os.ReadFile("../../collectors/debugpod/testdata/debug-pod.json")
	if err != nil {
		t.Fatal(err)
	}
	debugPod := func(edit func(p map[string]any)) map[string]any {
		var p map[string]any
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		delete(p, "status")
		if edit != nil {
			edit(p)
		}
		return p
	}
	spec := func(p map[string]any) map[string]any { return p["spec"].(map[string]any) }
	container := func(p map[string]any) map[string]any { return spec(p)["containers"].([]any)[0].(map[string]any) }
	sc := func(p map[string]any) map[string]any { return container(p)["securityContext"].(map[string]any) }

	// The policy takes effect once the apiserver has loaded it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := c.dryRunPod("trace-svc", debugPod(func(p map[string]any) { container(p)["image"] = "docker.io/library/busybox" }))
		if code >= 400 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the admission policy from docs/rbac.md never took effect")
		}
		time.Sleep(300 * time.Millisecond)
	}

	cases := []struct {
		name string
		ns   string
		edit func(p map[string]any)
		deny string // part of the denial; "" when admitted
	}{
		{name: "the plugin's debug pod", ns: "trace-svc"},
		{name: "the plugin's debug pod by digest", ns: "trace-svc", edit: func(p map[string]any) {
			container(p)["image"] = "registry.k8s.io/kube-proxy@sha256:" + strings.Repeat("0", 64)
		}},
		{name: "any pod in another namespace", ns: "elsewhere", edit: func(p map[string]any) {
			container(p)["image"] = "docker.io/library/busybox"
			sc(p)["privileged"] = true
			delete(sc(p), "allowPrivilegeEscalation") // the API refuses false with privileged
		}},
		{name: "without the debug-pod label", ns: "trace-svc", deny: "only kubectl trace-svc's node debug pods",
			edit: func(p map[string]any) {
				delete(p["metadata"].(map[string]any)["labels"].(map[string]any), "trace-svc.io/debug-pod")
			}},
		{name: "another image", ns: "trace-svc", deny: "runs kube-proxy's image",
			edit: func(p map[string]any) { container(p)["image"] = "docker.io/library/busybox" }},
		{name: "an image named like kube-proxy's", ns: "trace-svc", deny: "runs kube-proxy's image",
			edit: func(p map[string]any) { container(p)["image"] = "registry.k8s.io/kube-proxy-evil:v1" }},
		{name: "a second container", ns: "trace-svc", deny: "one container",
			edit: func(p map[string]any) {
				spec(p)["containers"] = append(spec(p)["containers"].([]any), map[string]any{"name": "two", "image": "registry.k8s.io/kube-proxy:v1.37.2"})
			}},
		{name: "an init container", ns: "trace-svc", deny: "one container",
			edit: func(p map[string]any) {
				spec(p)["initContainers"] = []any{map[string]any{"name": "init", "image": "registry.k8s.io/kube-proxy:v1.37.2"}}
			}},
		{name: "SYS_ADMIN", ns: "trace-svc", deny: "adds NET_ADMIN and NET_RAW",
			edit: func(p map[string]any) {
				sc(p)["capabilities"].(map[string]any)["add"] = []any{"NET_ADMIN", "NET_RAW", "SYS_ADMIN"}
			}},
		{name: "capabilities not dropped", ns: "trace-svc", deny: "drops every other capability",
			edit: func(p map[string]any) { delete(sc(p)["capabilities"].(map[string]any), "drop") }},
		{name: "privileged", ns: "trace-svc", deny: "not privileged",
			edit: func(p map[string]any) {
				sc(p)["privileged"] = true
				delete(sc(p), "allowPrivilegeEscalation") // the API refuses false with privileged
			}},
		{name: "privilege escalation", ns: "trace-svc", deny: "cannot escalate",
			edit: func(p map[string]any) { sc(p)["allowPrivilegeEscalation"] = true }},
		{name: "unconfined seccomp", ns: "trace-svc", deny: "RuntimeDefault seccomp",
			edit: func(p map[string]any) { sc(p)["seccompProfile"] = map[string]any{"type": "Unconfined"} }},
		{name: "no host network", ns: "trace-svc", deny: "shares the node's network and nothing else",
			edit: func(p map[string]any) { delete(spec(p), "hostNetwork") }},
		{name: "host PID", ns: "trace-svc", deny: "shares the node's network and nothing else",
			edit: func(p map[string]any) { spec(p)["hostPID"] = true }},
		{name: "the node's disk", ns: "trace-svc", deny: "mounts no volumes",
			edit: func(p map[string]any) {
				spec(p)["volumes"] = []any{map[string]any{"name": "root", "hostPath": map[string]any{"path": "/"}}}
				container(p)["volumeMounts"] = []any{map[string]any{"name": "root", "mountPath": "/host"}}
			}},
		{name: "a service account token", ns: "trace-svc", deny: "no service account token",
			edit: func(p map[string]any) { spec(p)["automountServiceAccountToken"] = true }},
		{name: "no deadline", ns: "trace-svc", deny: "deadline of at most ten minutes",
			edit: func(p map[string]any) { delete(spec(p), "activeDeadlineSeconds") }},
		{name: "a day's deadline", ns: "trace-svc", deny: "deadline of at most ten minutes",
			edit: func(p map[string]any) { spec(p)["activeDeadlineSeconds"] = 86400 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := debugPod(tc.edit)
			p["metadata"].(map[string]any)["namespace"] = tc.ns
			code, body := c.dryRunPod(tc.ns, p)
			switch {
			case tc.deny == "" && code != http.StatusCreated:
				t.Errorf("denied (%d), want admitted:\n%s", code, body)
			case tc.deny != "" && code == http.StatusCreated:
				t.Errorf("admitted, want denied with %q", tc.deny)
			case tc.deny != "" && !strings.Contains(string(body), tc.deny):
				t.Errorf("denied (%d) without %q:\n%s", code, tc.deny, body)
			}
		})
	}
}

// policyDocs returns the YAML documents of the code block that follows the
// admission-policy marker in docs/rbac.md.
func policyDocs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/rbac.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "<!-- admission-policy:")
	if !ok {
		t.Fatal("docs/rbac.md has no admission-policy marker")
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(after)
	if m == nil {
		t.Fatal("no yaml block after the admission-policy marker in docs/rbac.md")
	}
	return strings.Split(m[1], "\n---\n")
}

// postYAML creates the object doc (YAML) at path.
func (c *cluster) postYAML(path, doc string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest("POST", c.apiURL+path, strings.NewReader(doc))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := c.api.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// dryRunPod asks the apiserver to admit pod in ns without creating it.
func (c *cluster) dryRunPod(ns string, pod map[string]any) (int, []byte) {
	c.t.Helper()
	obj, err := json.Marshal(pod)
	if err != nil {
		c.t.Fatal(err)
	}
	code, body, err := c.do("POST", fmt.Sprintf("/api/v1/namespaces/%s/pods?dryRun=All", ns), obj)
	if err != nil {
		c.t.Fatal(err)
	}
	return code, bytes.TrimSpace(body)
}
