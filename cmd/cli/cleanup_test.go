package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
)

func TestPrintCleanup(t *testing.T) {
	var out bytes.Buffer
	printCleanup(genericiooptions.IOStreams{Out: &out}, "debug", debugpod.CleanupReport{
		Deleted: []debugpod.CleanupPod{{Pod: "debug/trace-svc-a", Node: "node-1", Why: "it finished (Succeeded)"}},
		Kept: []debugpod.CleanupPod{{Pod: "debug/trace-svc-b", Node: "node-2", CreatedBy: "alice\x1b]0;owned\a on laptop-7 at 2025-06-01T09:59:30Z",
			Why: "it is running and inside its deadline (1m40s left): a trace may be using it"}},
	})
	want := `deleted pod debug/trace-svc-a (node node-1, maker not recorded): it finished (Succeeded)
kept pod debug/trace-svc-b (node node-2, made by alice\x1b]0;owned\x07 on laptop-7 at 2025-06-01T09:59:30Z): it is running and inside its deadline (1m40s left): a trace may be using it
kept 1 debug pod(s) a trace may still be using; kubectl trace-svc cleanup --all deletes them too
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("cleanup output (-want +got):\n%s", diff)
	}
	out.Reset()
	printCleanup(genericiooptions.IOStreams{Out: &out}, "debug", debugpod.CleanupReport{})
	if got := out.String(); got != "no trace-svc debug pods in namespace \"debug\"\n" {
		t.Errorf("nothing to do: %q", got)
	}
}

// certPEM is a self-signed client certificate for cn.
func certPEM(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"system:masters"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestKubeconfigUser: the debug pods record the user of the context in
// use, by its client certificate's common name when it has one.
func TestKubeconfigUser(t *testing.T) {
	dir := t.TempDir()
	certFile := filepath.Join(dir, "carol.crt")
	if err := os.WriteFile(certFile, certPEM(t, "carol"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "config")
	err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
current-context: admin
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"}
contexts:
- name: admin
  context: {cluster: c, user: kubernetes-admin}
- name: dev
  context: {cluster: c, user: bob-token}
- name: file
  context: {cluster: c, user: carol-file}
users:
- name: kubernetes-admin
  user: {client-certificate-data: `+base64.StdEncoding.EncodeToString(certPEM(t, "alice"))+`}
- name: bob-token
  user: {token: secret}
- name: carol-file
  user: {client-certificate: `+certFile+`}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		context, as, want string
	}{
		{"", "", "alice"},
		{"dev", "", "bob-token"},
		{"file", "", "carol"},
		{"", "system:serviceaccount:ops:tracer", "alice as system:serviceaccount:ops:tracer"},
	} {
		flags := genericclioptions.NewConfigFlags(false)
		flags.KubeConfig = &kubeconfig
		flags.Context, flags.Impersonate = &c.context, &c.as
		if got := kubeconfigUser(flags); got != c.want {
			t.Errorf("context %q as %q: %q, want %q", c.context, c.as, got, c.want)
		}
	}
	cr := creator(genericclioptions.NewConfigFlags(false), time.Date(2025, 6, 1, 10, 0, 0, 0, time.FixedZone("CEST", 7200)))
	if host, _ := os.Hostname(); cr.Host != host || cr.Time != "2025-06-01T08:00:00Z" || strings.Contains(cr.String(), "\n") {
		t.Errorf("creator %+v", cr)
	}
}
