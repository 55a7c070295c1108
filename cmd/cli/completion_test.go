package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func svc(ns, name string, typ corev1.ServiceType, clusterIP string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: typ, ClusterIP: clusterIP},
	}
}

func completionFixtures() []k8sruntime.Object {
	external := svc("shop", "legacy-db", corev1.ServiceTypeExternalName, "")
	external.Spec.ExternalName = "db.example.com"
	return []k8sruntime.Object{
		svc("shop", "web", corev1.ServiceTypeClusterIP, "10.96.0.10"),
		svc("shop", "api", corev1.ServiceTypeLoadBalancer, "10.96.0.11"),
		svc("shop", "web-headless", corev1.ServiceTypeClusterIP, corev1.ClusterIPNone),
		svc("shop", "worker", "", "10.96.0.12"),
		external,
		svc("default", "kubernetes", corev1.ServiceTypeClusterIP, "10.96.0.1"),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "control-plane"}},
	}
}

func TestCompletionListsWithFakeClientset(t *testing.T) {
	client := fake.NewClientset(completionFixtures()...)
	ctx := context.Background()
	tests := []struct {
		name string
		list func() ([]string, error)
		want []string
	}{
		{"services in shop", func() ([]string, error) { return serviceNames(ctx, client, "shop", "") }, []string{
			"api\tLoadBalancer 10.96.0.11",
			"legacy-db\tExternalName db.example.com",
			"web\tClusterIP 10.96.0.10",
			"web-headless\theadless",
			"worker\tClusterIP 10.96.0.12",
		}},
		{"services with prefix", func() ([]string, error) { return serviceNames(ctx, client, "shop", "we") }, []string{
			"web\tClusterIP 10.96.0.10",
			"web-headless\theadless",
		}},
		{"services in default", func() ([]string, error) { return serviceNames(ctx, client, "default", "") }, []string{"kubernetes\tClusterIP 10.96.0.1"}},
		{"no services match", func() ([]string, error) { return serviceNames(ctx, client, "shop", "zz") }, nil},
		{"empty namespace", func() ([]string, error) { return serviceNames(ctx, client, "nothing", "") }, nil},
		{"namespaces", func() ([]string, error) { return namespaceNames(ctx, client, "") }, []string{"default", "kube-system", "shop"}},
		{"namespaces with prefix", func() ([]string, error) { return namespaceNames(ctx, client, "k") }, []string{"kube-system"}},
		{"nodes", func() ([]string, error) { return nodeNames(ctx, client, "") }, []string{"control-plane", "node-1", "node-2"}},
		{"nodes with prefix", func() ([]string, error) { return nodeNames(ctx, client, "node-") }, []string{"node-1", "node-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.list()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	// Completion lists come from the watch cache.
	lists := 0
	for _, a := range client.Actions() {
		l, ok := a.(k8stesting.ListActionImpl)
		if !ok {
			t.Errorf("unexpected API call %s %s", a.GetVerb(), a.GetResource().Resource)
			continue
		}
		lists++
		if l.GetListOptions().ResourceVersion != "0" {
			t.Errorf("%s %s listed with resourceVersion %q, want \"0\"", a.GetVerb(), a.GetResource().Resource, l.GetListOptions().ResourceVersion)
		}
	}
	if lists != len(tests) {
		t.Errorf("%d list calls, want %d", lists, len(tests))
	}
}

func TestCompletionListErrorsNameTheObject(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "*", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: a.GetResource().Resource}, "", errors.New("RBAC"))
	})
	ctx := context.Background()
	for _, tt := range []struct {
		err  error
		want string
	}{
		{second(serviceNames(ctx, client, "shop", "")), `list services in namespace "shop": `},
		{second(namespaceNames(ctx, client, "")), "list namespaces: "},
		{second(nodeNames(ctx, client, "")), "list nodes: "},
	} {
		if tt.err == nil || !strings.HasPrefix(tt.err.Error(), tt.want) || !apierrors.IsForbidden(tt.err) {
			t.Errorf("err = %v, want %q... wrapping Forbidden", tt.err, tt.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// fakeAPIServer serves just enough of the core/v1 API for completion: the
// Services of each namespace, namespaces, and nodes (403 when forbidNodes).
type fakeAPIServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
}

func newFakeAPIServer(t *testing.T, forbidNodes bool) *fakeAPIServer {
	t.Helper()
	var services []corev1.Service
	var namespaces []corev1.Namespace
	var nodes []corev1.Node
	for _, o := range completionFixtures() {
		switch o := o.(type) {
		case *corev1.Service:
			services = append(services, *o)
		case *corev1.Namespace:
			namespaces = append(namespaces, *o)
		case *corev1.Node:
			nodes = append(nodes, *o)
		}
	}
	s := &fakeAPIServer{}
	reply := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/services", func(w http.ResponseWriter, r *http.Request) {
		list := corev1.ServiceList{TypeMeta: metav1.TypeMeta{Kind: "ServiceList", APIVersion: "v1"}}
		for _, svc := range services {
			if svc.Namespace == r.PathValue("ns") {
				list.Items = append(list.Items, svc)
			}
		}
		reply(w, http.StatusOK, list)
	})
	mux.HandleFunc("GET /api/v1/namespaces", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, corev1.NamespaceList{TypeMeta: metav1.TypeMeta{Kind: "NamespaceList", APIVersion: "v1"}, Items: namespaces})
	})
	mux.HandleFunc("GET /api/v1/nodes", func(w http.ResponseWriter, _ *http.Request) {
		if forbidNodes {
			reply(w, http.StatusForbidden, metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status:   metav1.StatusFailure, Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden,
				Message: `nodes is forbidden: User "dev" cannot list resource "nodes" in API group "" at the cluster scope`,
			})
			return
		}
		reply(w, http.StatusOK, corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}, Items: nodes})
	})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *fakeAPIServer) takeRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.requests
	s.requests = nil
	return r
}

// writeKubeconfig points two contexts at server: "shop-admin" (namespace
// shop, the current one) and "dev" (no namespace, so "default").
func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	config := `apiVersion: v1
kind: Config
clusters:
- name: test-cluster
  cluster:
    server: ` + server + `
contexts:
- name: shop-admin
  context: {cluster: test-cluster, user: admin, namespace: shop}
- name: dev
  context: {cluster: test-cluster, user: developer}
current-context: shop-admin
users:
- name: admin
  user: {token: admin-token}
- name: developer
  user: {token: dev-token}
`
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing from the environment may leak in.
	t.Setenv("KUBECONFIG", path)
	return path
}

// complete runs "kubectl-trace_svc __complete args..." as the shell scripts
// and kubectl_complete-trace_svc do, and returns the completions and the
// directive line.
func complete(t *testing.T, root *cobra.Command, args ...string) ([]string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("__complete %q: %v (stderr %q)", args, err, errOut.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	return lines[:len(lines)-1], lines[len(lines)-1]
}

func newTestRoot() *cobra.Command {
	return NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
}

func TestCompletionThroughAPIServer(t *testing.T) {
	server := newFakeAPIServer(t, false)
	kubeconfig := writeKubeconfig(t, server.URL)
	noFiles := ":4" // cobra.ShellCompDirectiveNoFileComp
	// Subcommands come first, as "name<TAB>short description".
	var subcommands []string
	var simulate string
	for _, c := range newTestRoot().Commands() {
		subcommands = append(subcommands, c.Name()+"\t"+c.Short)
		if c.Name() == "simulate" {
			simulate = c.Name() + "\t" + c.Short
		}
	}
	subcommands = append(subcommands, "help\tHelp about any command")
	slices.Sort(subcommands)
	shopServices := []string{
		"api\tLoadBalancer 10.96.0.11",
		"legacy-db\tExternalName db.example.com",
		"web\tClusterIP 10.96.0.10",
		"web-headless\theadless",
		"worker\tClusterIP 10.96.0.12",
	}
	tests := []struct {
		name     string
		args     []string
		want     []string
		requests []string
	}{
		{
			name:     "services of the context's namespace, after the subcommands",
			args:     []string{"--kubeconfig", kubeconfig, ""},
			want:     append(append([]string{}, subcommands...), shopServices...),
			requests: []string{"GET /api/v1/namespaces/shop/services?resourceVersion=0"},
		},
		{
			name:     "services by prefix",
			args:     []string{"--kubeconfig", kubeconfig, "we"},
			want:     []string{"web\tClusterIP 10.96.0.10", "web-headless\theadless"},
			requests: []string{"GET /api/v1/namespaces/shop/services?resourceVersion=0"},
		},
		{
			name:     "services of -n",
			args:     []string{"--kubeconfig", kubeconfig, "-n", "default", "k"},
			want:     []string{"kubernetes\tClusterIP 10.96.0.1"},
			requests: []string{"GET /api/v1/namespaces/default/services?resourceVersion=0"},
		},
		{
			name:     "services of --context without a namespace",
			args:     []string{"--kubeconfig", kubeconfig, "--context", "dev", "k"},
			want:     []string{"kubernetes\tClusterIP 10.96.0.1"},
			requests: []string{"GET /api/v1/namespaces/default/services?resourceVersion=0"},
		},
		{
			name:     "one positional argument only",
			args:     []string{"--kubeconfig", kubeconfig, "-n", "shop", "web", ""},
			want:     []string{},
			requests: nil,
		},
		{
			name:     "namespaces",
			args:     []string{"--kubeconfig", kubeconfig, "--namespace", ""},
			want:     []string{"default", "kube-system", "shop"},
			requests: []string{"GET /api/v1/namespaces?resourceVersion=0"},
		},
		{
			name:     "namespaces for a subcommand, by prefix",
			args:     []string{"simulate", "--kubeconfig", kubeconfig, "-n", "s"},
			want:     []string{"shop"},
			requests: []string{"GET /api/v1/namespaces?resourceVersion=0"},
		},
		{
			name: "contexts, from the kubeconfig alone",
			args: []string{"--kubeconfig", kubeconfig, "--context", ""},
			want: []string{"dev", "shop-admin"},
		},
		{
			name: "clusters",
			args: []string{"--kubeconfig", kubeconfig, "--cluster", ""},
			want: []string{"test-cluster"},
		},
		{
			name: "users by prefix",
			args: []string{"--kubeconfig", kubeconfig, "--user", "d"},
			want: []string{"developer"},
		},
		{
			name: "subcommands by prefix",
			args: []string{"--kubeconfig", kubeconfig, "si"},
			want: []string{simulate},
			// The root also asks for Services starting with "si": none.
			requests: []string{"GET /api/v1/namespaces/shop/services?resourceVersion=0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server.takeRequests()
			got, directive := complete(t, newTestRoot(), tt.args...)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("completions (-want +got):\n%s", diff)
			}
			if directive != noFiles {
				t.Errorf("directive %s, want %s (no file names)", directive, noFiles)
			}
			if diff := cmp.Diff(tt.requests, server.takeRequests()); diff != "" {
				t.Errorf("API requests (-want +got):\n%s", diff)
			}
		})
	}
}

// The trace command (kubectl trace-svc NAME --node ...) comes later; any --node
// flag in the tree gets node completion from registerCompletions.
func TestNodeFlagCompletionThroughAPIServer(t *testing.T) {
	for _, tt := range []struct {
		name        string
		forbidNodes bool
		want        []string
	}{
		{"nodes", false, []string{"node-1", "node-2"}},
		{"forbidden: nothing, and no file names", true, []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			server := newFakeAPIServer(t, tt.forbidNodes)
			kubeconfig := writeKubeconfig(t, server.URL)
			root := newTestRoot()
			trace := &cobra.Command{Use: "fake-trace", RunE: func(*cobra.Command, []string) error { return nil }}
			trace.Flags().String("node", "", "node to trace")
			root.AddCommand(trace)
			kubeconfigFlag := kubeconfig
			f := genericclioptions.NewConfigFlags(false)
			f.KubeConfig = &kubeconfigFlag
			registerCompletions(root, f)

			got, directive := complete(t, root, "fake-trace", "--node", "node-")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("completions (-want +got):\n%s", diff)
			}
			if directive != ":4" {
				t.Errorf("directive %s, want :4", directive)
			}
			if diff := cmp.Diff([]string{"GET /api/v1/nodes?resourceVersion=0"}, server.takeRequests()); diff != "" {
				t.Errorf("API requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompletionWithoutCluster(t *testing.T) {
	// Nothing listens on port 1: completion gives up quietly, offers no files.
	kubeconfig := writeKubeconfig(t, "http://127.0.0.1:1")
	got, directive := complete(t, newTestRoot(), "--kubeconfig", kubeconfig, "--namespace", "")
	if len(got) != 0 || directive != ":4" {
		t.Errorf("got %q %s, want no completions and :4", got, directive)
	}
}

func TestCompletionCommand(t *testing.T) {
	for _, tt := range []struct {
		shell, want string
	}{
		{"bash", "__start_kubectl-trace_svc"},
		{"zsh", "#compdef kubectl-trace_svc"},
		{"fish", "complete -c kubectl-trace_svc"},
		{"powershell", "Register-ArgumentCompleter"},
	} {
		t.Run(tt.shell, func(t *testing.T) {
			var out bytes.Buffer
			root := NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &bytes.Buffer{}})
			root.SetArgs([]string{"completion", tt.shell})
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tt.want) || !strings.Contains(out.String(), "__complete") {
				t.Errorf("completion %s does not contain %q and __complete:\n%.400s", tt.shell, tt.want, out.String())
			}
		})
	}
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		root := newTestRoot()
		root.SetArgs(args)
		if err := root.Execute(); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	// The completion command completes its own argument.
	got, _ := complete(t, newTestRoot(), "completion", "")
	if diff := cmp.Diff(completionShells, got); diff != "" {
		t.Errorf("completion <TAB> (-want +got):\n%s", diff)
	}
}

// kubectl (1.26+) runs kubectl_complete-trace_svc with the words after
// "kubectl trace-svc"; the script must hand them to __complete unchanged.
func TestKubectlCompleteScript(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("a POSIX shell script")
	}
	script, err := os.ReadFile("../../kubectl_complete-trace_svc")
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat("../../kubectl_complete-trace_svc")
	if err != nil || info.Mode()&0o111 == 0 {
		t.Fatalf("kubectl_complete-trace_svc is not executable (%v)", err)
	}
	fakePlugin := "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\n"
	for _, layout := range []string{"sibling", "on PATH"} {
		t.Run(layout, func(t *testing.T) {
			dir, pathDir := t.TempDir(), t.TempDir()
			pluginDir := dir
			if layout == "on PATH" {
				pluginDir = pathDir
			}
			if err := os.WriteFile(filepath.Join(dir, "kubectl_complete-trace_svc"), script, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pluginDir, "kubectl-trace_svc"), []byte(fakePlugin), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(filepath.Join(dir, "kubectl_complete-trace_svc"), "-n", "shop", "my svc", "")
			cmd.Env = append(os.Environ(), "PATH="+pathDir+string(os.PathListSeparator)+"/usr/bin:/bin")
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if want := "[__complete][-n][shop][my svc][]"; string(out) != want {
				t.Errorf("ran %s, want %s", out, want)
			}
		})
	}
}
