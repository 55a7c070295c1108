package cli

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
)

// creator says who makes this trace's debug pods, for the annotation that
// cleanup reads: the kubeconfig's user, this machine, now.
func creator(flags *genericclioptions.ConfigFlags, now time.Time) *debugpod.Creator {
	c := &debugpod.Creator{User: kubeconfigUser(flags), Time: now.UTC().Format(time.RFC3339)}
	c.Host, _ = os.Hostname()
	return c
}

// kubeconfigUser names the user of the context in use: the common name of
// its client certificate when it has one (what the API server sees), else
// the name of its user entry; with --as, who it acts as too.
func kubeconfigUser(flags *genericclioptions.ConfigFlags) string {
	if flags == nil {
		return ""
	}
	raw, err := flags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return ""
	}
	current := raw.CurrentContext
	if flags.Context != nil && *flags.Context != "" {
		current = *flags.Context
	}
	var user string
	if c := raw.Contexts[current]; c != nil {
		user = c.AuthInfo
	}
	if flags.AuthInfoName != nil && *flags.AuthInfoName != "" {
		user = *flags.AuthInfoName
	}
	if ai := raw.AuthInfos[user]; ai != nil {
		if cn := certCommonName(ai); cn != "" {
			user = cn
		}
	}
	if flags.Impersonate != nil && *flags.Impersonate != "" {
		user += " as " + *flags.Impersonate
	}
	return user
}

// certCommonName is the common name of the user entry's client
// certificate, or "".
func certCommonName(ai *clientcmdapi.AuthInfo) string {
	data := ai.ClientCertificateData
	if len(data) == 0 && ai.ClientCertificate != "" {
		data, _ = os.ReadFile(ai.ClientCertificate)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return ""
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return ""
	}
	return cert.Subject.CommonName
}
