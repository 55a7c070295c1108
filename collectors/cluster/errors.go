package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
)

// RBACDoc is where the user docs list the RBAC the trace needs; forbidden
// errors point there.
const RBACDoc = "docs/rbac.md"

// Sentinel errors for the known conditions; test them with errors.Is. Each
// is also reachable from the typed error that carries the details.
var (
	// ErrServiceNotFound: the Service does not exist in the namespace.
	ErrServiceNotFound = errors.New("service not found")
	// ErrExternalName: the Service is of type ExternalName, a DNS alias with
	// no proxy path.
	ErrExternalName = errors.New("service is of type ExternalName")
	// ErrNoEndpoints: the EndpointSlices list no endpoint for the Service.
	ErrNoEndpoints = errors.New("service has no endpoints")
	// ErrForbidden: the user may not do something the trace needs.
	ErrForbidden = errors.New("forbidden")
)

// NotFoundError is returned when the Service does not exist. Suggestions are
// names of Services in the same namespace close to the one asked for.
type NotFoundError struct {
	Namespace, Name string
	Suggestions     []string
	// Listed is true when the namespace's Services could be listed (for
	// suggestions); Available is how many there are.
	Listed    bool
	Available int
	Err       error // the API server's error
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("service %q not found in namespace %q", e.Name, e.Namespace)
	switch {
	case len(e.Suggestions) > 0:
		msg += "; did you mean " + quoteOr(e.Suggestions) + "?"
	case e.Listed && e.Available == 0:
		msg += fmt.Sprintf("; there are no services in namespace %q", e.Namespace)
	case e.Listed:
		msg += fmt.Sprintf("; kubectl get services -n %s lists them", e.Namespace)
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrServiceNotFound) and apierrors.IsNotFound
// both work.
func (e *NotFoundError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrServiceNotFound}
	}
	return []error{ErrServiceNotFound, e.Err}
}

// ExternalNameError is returned for a Service of type ExternalName: the
// cluster DNS answers its name with a CNAME and no node rule ever sees the
// traffic, so there is no path to trace.
type ExternalNameError struct {
	Namespace, Name string
	ExternalName    string // spec.externalName
}

func (e *ExternalNameError) Error() string {
	return fmt.Sprintf("service %q is of type ExternalName: the cluster DNS answers %s.%s.svc with a CNAME to %q (spec.externalName), "+
		"so clients connect to that name directly and kube-proxy writes no rules for it; there is no proxy path to trace",
		e.Namespace+"/"+e.Name, e.Name, e.Namespace, e.ExternalName)
}

func (e *ExternalNameError) Unwrap() error { return ErrExternalName }

// NoEndpointsError says that a Service's EndpointSlices list no endpoint,
// and the likely reason as far as the API objects tell.
type NoEndpointsError struct {
	Namespace, Name string
	Selector        map[string]string // the Service's spec.selector
	Slices          int               // EndpointSlices found (all empty)
}

func (e *NoEndpointsError) Error() string {
	svc := fmt.Sprintf("service %q has no endpoints", e.Namespace+"/"+e.Name)
	if len(e.Selector) == 0 {
		return fmt.Sprintf("%s: it has no selector, so its EndpointSlices (label %s=%s) are managed by hand, and they list none",
			svc, discoveryServiceNameLabel, e.Name)
	}
	sel := labels.SelectorFromSet(e.Selector).String()
	return fmt.Sprintf("%s: no running pod with an IP matches its selector %s (kubectl get pods -n %s -l %s)",
		svc, sel, e.Namespace, sel)
}

func (e *NoEndpointsError) Unwrap() error { return ErrNoEndpoints }

// ForbiddenError is an API request the user's RBAC does not allow. Verb,
// Group, Resource, Subresource, Namespace and Name say what was denied: from
// the API server's message where it names them, else from the call site.
type ForbiddenError struct {
	Verb, Group, Resource, Subresource, Namespace, Name string
	// User is the user name the API server reported, when it did.
	User string
	// Reason is what the authorizer added to the denial, or the whole
	// server message when it is not the authorizer's usual form.
	Reason string
	Err    error // the API server's error
}

func (e *ForbiddenError) Error() string {
	var b strings.Builder
	b.WriteString("you are not allowed to ")
	b.WriteString(describeAccess(e.Verb, e.Group, e.Resource, e.Subresource, e.Namespace, e.Name))
	if e.User != "" {
		fmt.Fprintf(&b, " (user %q)", e.User)
	}
	sep := ": "
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
		sep = "; "
	}
	fmt.Fprintf(&b, "%sask for the RBAC in %s (check with %s)", sep, RBACDoc,
		canICommand(e.Verb, e.Group, e.Resource, e.Subresource, e.Namespace, e.Name))
	return b.String()
}

// Unwrap makes errors.Is(err, ErrForbidden) and apierrors.IsForbidden both
// work.
func (e *ForbiddenError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrForbidden}
	}
	return []error{ErrForbidden, e.Err}
}

// request names one API request for error messages.
type request struct {
	verb, group, resource, subresource, namespace, name string
	// what names the object(s) in a plain error: `service "shop/web"`.
	what string
}

// wrap turns an API error into one sentence naming the verb and the object;
// a Forbidden becomes a *ForbiddenError.
func (r request) wrap(err error) error {
	if err == nil {
		return nil
	}
	if apierrors.IsForbidden(err) {
		return r.forbidden(err)
	}
	// No answer at all (refused, no route, TLS, timeout): say so, and where
	// to look, rather than client-go's raw "Get https://...: dial tcp ...".
	// An interrupt (Ctrl-C) is not a reachability problem.
	var urlErr *url.Error
	if errors.As(err, &urlErr) && !errors.Is(err, context.Canceled) {
		server := urlErr.URL
		if u, perr := url.Parse(urlErr.URL); perr == nil {
			server = u.Scheme + "://" + u.Host
		}
		return fmt.Errorf("cannot talk to the API server at %s to %s %s: %w; check the kubeconfig's current context (or pass --context or --kubeconfig) and that the cluster is reachable from here",
			server, r.verb, r.what, urlErr.Err)
	}
	return fmt.Errorf("%s %s: %w", r.verb, r.what, err)
}

// forbiddenRE matches the authorizer's denial as the API server words it
// (k8s.io/apiserver responsewriters.forbiddenMessage):
//
//	User "alice" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "shop"[: reason]
//	User "alice" cannot list resource "nodes" in API group "" at the cluster scope[: reason]
//
// Both patterns are compiled on first use, not at every start of the binary.
var forbiddenRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`User ("(?:[^"\\]|\\.)*") cannot (\S+) resource ("(?:[^"\\]|\\.)*") in API group ("(?:[^"\\]|\\.)*")(?: in the namespace ("(?:[^"\\]|\\.)*")| at the cluster scope)(?:: (.*))?$`)
})

// forbiddenPathRE is the same for a non-resource URL such as /version:
//
//	User "alice" cannot get path "/version"[: reason]
var forbiddenPathRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`User ("(?:[^"\\]|\\.)*") cannot (\S+) path ("(?:[^"\\]|\\.)*")(?:: (.*))?$`)
})

func unquote(s string) string {
	if s == "" {
		return ""
	}
	u, err := strconv.Unquote(s)
	if err != nil {
		return strings.Trim(s, `"`)
	}
	return u
}

func (r request) forbidden(err error) *ForbiddenError {
	fe := &ForbiddenError{
		Verb: r.verb, Group: r.group, Resource: r.resource, Subresource: r.subresource,
		Namespace: r.namespace, Name: r.name, Err: err,
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return fe
	}
	st := status.Status()
	if d := st.Details; d != nil {
		// NewForbidden puts the resource (not a kind) in Details.Kind.
		if d.Kind != "" && fe.Resource == "" {
			fe.Resource, fe.Group = d.Kind, d.Group
		}
		if d.Name != "" && fe.Name == "" {
			fe.Name = d.Name
		}
	}
	if m := forbiddenPathRE().FindStringSubmatch(st.Message); m != nil {
		fe.User, fe.Verb, fe.Resource = unquote(m[1]), m[2], unquote(m[3])
		fe.Group, fe.Subresource, fe.Namespace, fe.Name = "", "", "", ""
		fe.Reason = m[4]
		return fe
	}
	m := forbiddenRE().FindStringSubmatch(st.Message)
	if m == nil {
		// Not the authorizer's wording (an admission plugin, a webhook):
		// keep the server's message whole.
		fe.Reason = st.Message
		return fe
	}
	fe.User = unquote(m[1])
	fe.Verb = m[2]
	res, sub, _ := strings.Cut(unquote(m[3]), "/")
	fe.Resource, fe.Subresource = res, sub
	fe.Group = unquote(m[4])
	fe.Namespace = unquote(m[5]) // empty at the cluster scope
	fe.Reason = m[6]
	return fe
}

// describeAccess words one permission: `list endpointslices.discovery.k8s.io
// in namespace "shop"`, `create pods/exec in namespace "trace-svc"`,
// `get services "web" in namespace "shop"`, `list nodes at the cluster scope`.
func describeAccess(verb, group, resource, subresource, namespace, name string) string {
	var b strings.Builder
	b.WriteString(verb)
	b.WriteByte(' ')
	b.WriteString(qualifiedResource(group, resource, subresource))
	if name != "" {
		fmt.Fprintf(&b, " %q", name)
	}
	switch {
	case strings.HasPrefix(resource, "/"): // a non-resource URL
	case namespace != "":
		fmt.Fprintf(&b, " in namespace %q", namespace)
	default:
		b.WriteString(" at the cluster scope")
	}
	return b.String()
}

func qualifiedResource(group, resource, subresource string) string {
	s := resource
	if group != "" {
		s += "." + group
	}
	if subresource != "" {
		s += "/" + subresource
	}
	return s
}

// canICommand is the kubectl auth can-i command that checks one permission.
// A subresource goes in --subresource (kubectl reads "pods/exec" as TYPE/NAME).
func canICommand(verb, group, resource, subresource, namespace, name string) string {
	res := resource
	if group != "" {
		res += "." + group
	}
	if name != "" {
		res += "/" + name
	}
	cmd := "kubectl auth can-i " + verb + " " + res
	if subresource != "" {
		cmd += " --subresource=" + subresource
	}
	if namespace != "" {
		cmd += " -n " + namespace
	}
	return cmd
}

// quoteOr lists names as `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
func quoteOr(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
