package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestTraceAccessChecks(t *testing.T) {
	want := []AccessCheck{
		{Verb: "get", Resource: "services", Namespace: "shop"},
		{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices", Namespace: "shop"},
		{Verb: "get", Resource: "pods", Namespace: "shop"},
		{Verb: "list", Resource: "nodes"},
	}
	if diff := cmp.Diff(want, TraceAccessChecks("shop")); diff != "" {
		t.Errorf("TraceAccessChecks (-want +got):\n%s", diff)
	}
}

// reviewer answers SelfSubjectAccessReviews from a table of allowed
// permissions and records what it was asked.
type reviewer struct {
	allowed map[AccessCheck]bool
	mu      sync.Mutex
	asked   []AccessCheck
}

func (r *reviewer) react(a k8stesting.Action) (bool, runtime.Object, error) {
	review := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
	ra := review.Spec.ResourceAttributes
	c := AccessCheck{Verb: ra.Verb, Group: ra.Group, Resource: ra.Resource, Subresource: ra.Subresource, Namespace: ra.Namespace, Name: ra.Name}
	r.mu.Lock()
	r.asked = append(r.asked, c)
	r.mu.Unlock()
	review.Status.Allowed = r.allowed[c]
	if !review.Status.Allowed {
		review.Status.Reason = "no RBAC policy matched"
	}
	return true, review, nil
}

func TestCheckAccess(t *testing.T) {
	// A trace's reads, and a collector's: a debug pod's create and exec, and
	// a read that repeats one of the trace's (asked once).
	checks := append(TraceAccessChecks("shop"),
		AccessCheck{Verb: "create", Resource: "pods", Namespace: "trace-svc"},
		AccessCheck{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "trace-svc"})
	withDuplicate := append(slices.Clone(checks), AccessCheck{Verb: "get", Resource: "pods", Namespace: "shop"})
	allowAll := map[AccessCheck]bool{}
	for _, c := range checks {
		allowAll[c] = true
	}
	tests := []struct {
		name   string
		denied []AccessCheck
		want   string
	}{
		{name: "all allowed"},
		{
			name:   "no helper pod rights",
			denied: checks[4:6],
			want: `missing permissions: create pods in namespace "trace-svc", create pods/exec in namespace "trace-svc"; ` +
				`ask for the RBAC in docs/rbac.md (check with kubectl auth can-i create pods -n trace-svc)`,
		},
		{
			name:   "no nodes, no exec",
			denied: []AccessCheck{checks[3], checks[5]},
			want: `missing permissions: list nodes at the cluster scope, create pods/exec in namespace "trace-svc"; ` +
				`ask for the RBAC in docs/rbac.md (check with kubectl auth can-i list nodes)`,
		},
		{
			name:   "no slices",
			denied: checks[1:2],
			want: `missing permissions: list endpointslices.discovery.k8s.io in namespace "shop"; ` +
				`ask for the RBAC in docs/rbac.md (check with kubectl auth can-i list endpointslices.discovery.k8s.io -n shop)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &reviewer{allowed: map[AccessCheck]bool{}}
			for c := range allowAll {
				r.allowed[c] = true
			}
			for _, d := range tt.denied {
				delete(r.allowed, d)
			}
			c := fake.NewClientset()
			c.PrependReactor("create", "selfsubjectaccessreviews", r.react)
			err := CheckAccess(context.Background(), c, withDuplicate)
			if tt.want == "" {
				if err != nil {
					t.Errorf("CheckAccess() = %v", err)
				}
			} else {
				var de *AccessDeniedError
				if err == nil || err.Error() != tt.want || !errors.As(err, &de) || !errors.Is(err, ErrForbidden) {
					t.Errorf("CheckAccess():\n got %v\nwant %s", err, tt.want)
				} else if diff := cmp.Diff(tt.denied, de.Denied); diff != "" {
					t.Errorf("Denied (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(len(checks), len(r.asked)); diff != "" {
				t.Errorf("reviews asked (-want +got):\n%s", diff)
			}
			for _, a := range c.Actions() {
				if a.GetVerb() != "create" || a.GetResource().Resource != "selfsubjectaccessreviews" {
					t.Errorf("unexpected request: %s", describeAction(a))
				}
			}
		})
	}
}

func TestCheckAccessReviewFails(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("create", "selfsubjectaccessreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, forbidden("system:anonymous", "create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "")
	})
	err := CheckAccess(context.Background(), c, []AccessCheck{{Verb: "list", Resource: "nodes"}})
	want := `you are not allowed to create selfsubjectaccessreviews.authorization.k8s.io at the cluster scope (user "system:anonymous"): ` +
		`ask for the RBAC in docs/rbac.md (check with kubectl auth can-i create selfsubjectaccessreviews.authorization.k8s.io)`
	if err == nil || err.Error() != want || !apierrors.IsForbidden(err) {
		t.Errorf("CheckAccess():\n got %v\nwant %s", err, want)
	}
	if err := CheckAccess(context.Background(), c, nil); err != nil {
		t.Errorf("no checks: %v", err)
	}
}
