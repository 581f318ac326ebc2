package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"

	"github.com/egress-guard/egress-guard/webhook/config"
)

const (
	// MutatingWebhook and ValidatingWebhook name the two webhooks.
	MutatingWebhook   = "mutate.egressguard.io"
	ValidatingWebhook = "validate.egressguard.io"
	// WorkloadsWebhook is the validating webhook of the mesh's workloads.
	WorkloadsWebhook = "workloads.egressguard.io"

	// SwitchTimeout bounds how long Webhooks.Point waits for the API server
	// to call the new URL.
	SwitchTimeout = 60 * time.Second
)

// Webhooks are the MutatingWebhookConfiguration and the
// ValidatingWebhookConfiguration of one name, which send CREATE and UPDATE
// of the policed kinds (every namespace but kube-system) to a url with a CA
// bundle.
type Webhooks struct {
	Name string // of both configurations
	// Kinds are the kinds sent (nil: config.DefaultKinds), as the chart
	// registers config.kinds: one rule per API group.
	Kinds          []config.PolicedKind
	ProbeNamespace string // holds the dry-run object that checks which URL the API server calls
	CABundle       []byte
	URL            string // base URL registered last

	cp *ControlPlane
}

// InstallWebhooks creates the probe namespace and both webhook
// configurations, pointing at a URL nobody listens on, and waits until the
// API server calls them (and fails): from then on a successful probe proves
// that the API server calls whatever URL was registered last.
func InstallWebhooks(ctx context.Context, cp *ControlPlane, name, probeNamespace string, caBundle []byte) (*Webhooks, error) {
	w := &Webhooks{Name: name, ProbeNamespace: probeNamespace, CABundle: caBundle, cp: cp}
	if _, err := cp.EnsureNamespace(ctx, probeNamespace); err != nil {
		return nil, err
	}
	dead, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	if err := w.Register(ctx, fmt.Sprintf("https://127.0.0.1:%d", dead[0])); err != nil {
		return nil, err
	}
	if err := w.wait(ctx, false); err != nil {
		return nil, err
	}
	return w, nil
}

// Point registers base (https://host:port) and waits until the API
// server's calls reach a server there.
func (w *Webhooks) Point(ctx context.Context, base string) error {
	if err := w.Register(ctx, base); err != nil {
		return err
	}
	return w.wait(ctx, true)
}

// Register creates the webhook configurations, or points the existing ones
// at base (https://host:port): base/mutate and base/validate.
func (w *Webhooks) Register(ctx context.Context, base string) error {
	// A MutatingWebhook has the fields of a ValidatingWebhook, under the same
	// JSON names, and a reinvocationPolicy.
	var mutating admissionregistrationv1.MutatingWebhook
	js, err := json.Marshal(w.webhook(MutatingWebhook, base+"/mutate"))
	if err == nil {
		err = json.Unmarshal(js, &mutating)
	}
	if err != nil {
		return fmt.Errorf("building the mutating webhook: %w", err)
	}
	reinvocation := admissionregistrationv1.IfNeededReinvocationPolicy
	mutating.ReinvocationPolicy = &reinvocation

	api := w.cp.Client.AdmissionregistrationV1()
	if err := upsert(ctx, api.MutatingWebhookConfigurations(), &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: w.Name},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{mutating},
	}); err != nil {
		return fmt.Errorf("registering the mutating webhook: %w", err)
	}
	// As the chart registers it: the validating webhook judges the deletion
	// of VirtualServices too (EGR204).
	validating := w.webhook(ValidatingWebhook, base+"/validate")
	validating.Rules = append(slices.Clone(validating.Rules), admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Delete},
		Rule: admissionregistrationv1.Rule{
			APIGroups:   []string{"networking.istio.io"},
			APIVersions: []string{"*"},
			Resources:   []string{"virtualservices"},
		},
	})
	// As the chart registers them: the workloads of the mesh's namespaces
	// (here those labelled istio-injection=enabled).
	workloads := w.webhook(WorkloadsWebhook, base+"/validate")
	workloads.Rules = nil
	for _, k := range config.WorkloadKinds {
		i := slices.IndexFunc(workloads.Rules, func(r admissionregistrationv1.RuleWithOperations) bool { return r.APIGroups[0] == k.Group })
		if i < 0 {
			workloads.Rules = append(workloads.Rules, admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{k.Group}, APIVersions: []string{k.Version}},
			})
			i = len(workloads.Rules) - 1
		}
		workloads.Rules[i].Resources = append(workloads.Rules[i].Resources, k.Resource)
	}
	workloads.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"istio-injection": "enabled"}}
	if err := upsert(ctx, api.ValidatingWebhookConfigurations(), &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: w.Name},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{validating, workloads},
	}); err != nil {
		return fmt.Errorf("registering the validating webhook: %w", err)
	}
	w.URL = base
	return nil
}

// webhook is one webhook calling url: CREATE and UPDATE of the policed
// kinds (Resources), every namespace but kube-system, failing closed after 5 seconds.
// The validating one also gets the deletion of VirtualServices.
func (w *Webhooks) webhook(name, url string) admissionregistrationv1.ValidatingWebhook {
	matchPolicy := admissionregistrationv1.Equivalent
	sideEffects := admissionregistrationv1.SideEffectClassNone
	failurePolicy := admissionregistrationv1.Fail
	timeout := int32(5)
	kinds := w.Kinds
	if kinds == nil {
		kinds = config.DefaultKinds
	}
	var rules []admissionregistrationv1.RuleWithOperations
	for _, k := range kinds {
		i := slices.IndexFunc(rules, func(r admissionregistrationv1.RuleWithOperations) bool { return r.APIGroups[0] == k.Group })
		if i < 0 {
			rules = append(rules, admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{k.Group}, APIVersions: []string{"*"}},
			})
			i = len(rules) - 1
		}
		rules[i].Resources = append(rules[i].Resources, k.Resource)
	}
	return admissionregistrationv1.ValidatingWebhook{
		Name:         name,
		ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: w.CABundle},
		Rules:        rules,
		MatchPolicy:  &matchPolicy,
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key:      "kubernetes.io/metadata.name",
			Operator: metav1.LabelSelectorOpNotIn,
			Values:   []string{"kube-system"},
		}}},
		SideEffects:             &sideEffects,
		FailurePolicy:           &failurePolicy,
		TimeoutSeconds:          &timeout,
		AdmissionReviewVersions: []string{"v1"},
	}
}

// objectClient is the part of a typed client-go client upsert needs.
type objectClient[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// upsert creates obj, or replaces the stored object of its name with it.
func upsert[T metav1.Object](ctx context.Context, c objectClient[T], obj T) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := c.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj.SetResourceVersion("")
			_, err = c.Create(ctx, obj, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
		_, err = c.Update(ctx, obj, metav1.UpdateOptions{})
		return err
	})
}

var destinationRules = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}

// probe dry-run creates an in-cluster DestinationRule, which both webhooks
// intercept, and returns the error.
func (w *Webhooks) probe(ctx context.Context) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "DestinationRule",
		"metadata":   map[string]any{"name": "webhook-probe", "namespace": w.ProbeNamespace},
		"spec":       map[string]any{"host": "probe." + w.ProbeNamespace + ".svc.cluster.local"},
	}}
	_, err := w.cp.Dynamic.Resource(destinationRules).Namespace(w.ProbeNamespace).Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// wait waits until the API server's calls to the webhooks fail
// (reachable=false) or reach a server (reachable=true).
func (w *Webhooks) wait(ctx context.Context, reachable bool) error {
	ctx, cancel := context.WithTimeout(ctx, SwitchTimeout)
	defer cancel()
	var last error
	for {
		last = w.probe(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for the webhooks at %s: %w; last probe: %v", w.URL, ctx.Err(), last)
		}
		failed := last != nil && strings.Contains(last.Error(), "failed calling webhook")
		if failed != reachable {
			return nil
		}
		select {
		case <-ctx.Done():
			if reachable {
				return fmt.Errorf("the API server did not reach the webhooks at %s (%w); last probe: %v", w.URL, ctx.Err(), last)
			}
			return fmt.Errorf("the API server did not start calling the webhooks (%w); last probe: %v", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitReachable waits until the API server's calls to the webhooks reach a
// server, without registering anything: for when something else (a
// self-managed egress-guard) writes the caBundle.
func (w *Webhooks) WaitReachable(ctx context.Context) error {
	return w.wait(ctx, true)
}
