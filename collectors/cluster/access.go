package cluster

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// AccessCheck is one permission to ask the API server about. An empty
// Namespace means the cluster scope; an empty Name any object.
type AccessCheck struct {
	Verb, Group, Resource, Subresource, Namespace, Name string
}

// String words the permission: `create pods/exec in namespace "trace-svc"`.
func (a AccessCheck) String() string {
	return describeAccess(a.Verb, a.Group, a.Resource, a.Subresource, a.Namespace, a.Name)
}

// TraceAccessChecks lists what a trace uses: reading the Service, its
// EndpointSlices and pods in namespace and the nodes; and, when
// debugNamespace is set, running the helper pod there (create it, exec into
// it, read its status, delete it). Optional reads (kube-proxy pods, listing services
// for suggestions, listing pods of a big Service) are not listed: the trace
// works without them.
func TraceAccessChecks(namespace, debugNamespace string) []AccessCheck {
	checks := []AccessCheck{
		{Verb: "get", Resource: "services", Namespace: namespace},
		{Verb: "list", Group: discoveryv1.GroupName, Resource: "endpointslices", Namespace: namespace},
		{Verb: "get", Resource: "pods", Namespace: namespace},
		{Verb: "list", Resource: "nodes"},
	}
	if debugNamespace == "" {
		return checks
	}
	checks = append(checks,
		AccessCheck{Verb: "create", Resource: "pods", Namespace: debugNamespace},
		// Exec over SPDY is a POST (create). Over WebSocket it is a GET that
		// since 1.35 also needs create; a WebSocket upgrade that is
		// refused falls back to SPDY, so create is what must be allowed.
		AccessCheck{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: debugNamespace},
		AccessCheck{Verb: "get", Resource: "pods", Namespace: debugNamespace},
		AccessCheck{Verb: "delete", Resource: "pods", Namespace: debugNamespace},
	)
	// The same namespace twice would ask "get pods" twice.
	out := checks[:0]
	seen := map[AccessCheck]bool{}
	for _, c := range checks {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// AccessDeniedError lists the checks the API server denied, in the order
// they were asked.
type AccessDeniedError struct {
	Denied []AccessCheck
}

func (e *AccessDeniedError) Error() string {
	parts := make([]string, len(e.Denied))
	for i, d := range e.Denied {
		parts[i] = d.String()
	}
	first := e.Denied[0]
	return fmt.Sprintf("missing permissions: %s; ask for the RBAC in %s (check with %s)",
		strings.Join(parts, ", "), RBACDoc,
		canICommand(first.Verb, first.Group, first.Resource, first.Subresource, first.Namespace, first.Name))
}

// Unwrap makes errors.Is(err, ErrForbidden) work.
func (e *AccessDeniedError) Unwrap() error { return ErrForbidden }

// CheckAccess asks the API server (SelfSubjectAccessReview) whether the user
// may do each check, a few at a time, and returns an *AccessDeniedError
// listing every denied one, or nil when all are allowed. Run it before
// creating anything.
func CheckAccess(ctx context.Context, c kubernetes.Interface, checks []AccessCheck) error {
	allowed := make([]bool, len(checks))
	err := forEachBounded(ctx, len(checks), func(ctx context.Context, i int) error {
		a := checks[i]
		review := &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace:   a.Namespace,
					Verb:        a.Verb,
					Group:       a.Group,
					Resource:    a.Resource,
					Subresource: a.Subresource,
					Name:        a.Name,
				},
			},
		}
		res, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return request{verb: "create", group: authorizationv1.GroupName, resource: "selfsubjectaccessreviews",
				what: "selfsubjectaccessreview for " + a.String()}.wrap(err)
		}
		allowed[i] = res.Status.Allowed
		return nil
	})
	if err != nil {
		return err
	}
	var denied []AccessCheck
	for i, ok := range allowed {
		if !ok {
			denied = append(denied, checks[i])
		}
	}
	if len(denied) > 0 {
		return &AccessDeniedError{Denied: denied}
	}
	return nil
}
