package cluster

import (
	"context"
	"fmt"
	"slices"
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

// TraceAccessChecks lists what a trace reads: the Service, its
// EndpointSlices and pods in namespace, and the nodes. Optional reads
// (kube-proxy pods, listing services for suggestions, listing pods of a big
// Service) are not listed: the trace works without them. Each collector
// lists what it needs beyond that (debugpod.AccessChecks,
// kubeproxy.AccessChecks).
func TraceAccessChecks(namespace string) []AccessCheck {
	return []AccessCheck{
		{Verb: "get", Resource: "services", Namespace: namespace},
		{Verb: "list", Group: discoveryv1.GroupName, Resource: "endpointslices", Namespace: namespace},
		{Verb: "get", Resource: "pods", Namespace: namespace},
		{Verb: "list", Resource: "nodes"},
	}
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
	// Two lists may ask the same thing (get pods, when the debug pods go in
	// the Service's namespace): ask once.
	seen := map[AccessCheck]bool{}
	checks = slices.DeleteFunc(slices.Clone(checks), func(a AccessCheck) bool {
		dup := seen[a]
		seen[a] = true
		return dup
	})
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
