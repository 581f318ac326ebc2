package handler_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-guard/egress-guard/webhook/metrics"
)

// A denial reaches the client as the API server passes it on: the status of
// the webhook's answer, its message prefixed with the webhook's name
// (k8s.io/apiserver's webhook errors.ToStatusErr), the details kept. Its
// reason stays Forbidden: kubectl prints a Forbidden error's message
// ("Error from server (Forbidden): ... admission webhook ... denied the
// request: egress-guard denied ...: CODE: field: text"), where an Invalid
// one would be printed from its causes alone, without the webhook's name.
// The causes are there for clients that read them: one per denying
// violation, with its field.
func TestDenialCausesReachTheClient(t *testing.T) {
	h := newHandlers(t, loadEngine(t, scenario(scenario000, "config.yaml")), metrics.New(prometheus.NewRegistry()), 0)
	// Two hosts, both denied under the scenario's configuration.
	r := h.post(t, h.validate, readFile(t, filepath.Join("testdata", "dryrun-two-hosts", "review.json")))
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(r.raw, &review); err != nil {
		t.Fatal(err)
	}
	if review.Response.Allowed || review.Response.Result == nil {
		t.Fatalf("want a denial, got %s", r.raw)
	}
	// The API server's part.
	status := *review.Response.Result
	status.Message = fmt.Sprintf("admission webhook %q denied the request: %s", "validate.egressguard.io", status.Message)
	// client-go's part: the Status read from the response body.
	body, err := json.Marshal(&status)
	if err != nil {
		t.Fatal(err)
	}
	var got metav1.Status
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	err = apierrors.FromObject(&got)
	if !apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
		t.Fatalf("the client sees reason %q; want Forbidden, so that kubectl prints the message", apierrors.ReasonForError(err))
	}
	msg := err.Error()
	for _, s := range []string{`admission webhook "validate.egressguard.io" denied the request: egress-guard denied ServiceEntry default/`, `EGR101: spec.hosts[0]: external host "httpbin.org"`, `EGR101: spec.hosts[1]: external host "httpstat.us"`} {
		if !strings.Contains(msg, s) {
			t.Errorf("the message %q lacks %q", msg, s)
		}
	}
	d := err.(apierrors.APIStatus).Status().Details
	if d == nil || d.Kind != "ServiceEntry" || d.Group != "networking.istio.io" || len(d.Causes) != 2 {
		t.Fatalf("details %+v: want the object and two causes", d)
	}
	for i, want := range []metav1.StatusCause{
		{Type: metav1.CauseTypeFieldValueInvalid, Field: "spec.hosts[0]", Message: `EGR101: external host "httpbin.org" is not allowed for namespace "default"`},
		{Type: metav1.CauseTypeFieldValueInvalid, Field: "spec.hosts[1]", Message: `EGR101: external host "httpstat.us" is not allowed for namespace "default"`},
	} {
		if d.Causes[i] != want {
			t.Errorf("cause %d: %+v, want %+v", i, d.Causes[i], want)
		}
	}
}
