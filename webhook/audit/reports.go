package audit

import (
	"encoding/json"
	"sort"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// Source names egress-guard as the reports' producer.
	Source = "egress-guard"
	// ReportName is the name of the one Report egress-guard keeps per
	// namespace; a new audit replaces its results.
	ReportName = "egress-guard"
	// ManagedByLabel marks the reports egress-guard writes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// PassPolicy is the policy of the result that says an object is compliant.
	PassPolicy = "egress-guard"
)

// Reports turns an audit into OpenReports Reports, one per namespace (sorted
// by namespace). Each finding is a result whose policy is the rule code; an
// object without findings has one pass result. Skipped objects are left out.
func Reports(a *Audit) []reportsv1alpha1.Report {
	byNS := map[string]*reportsv1alpha1.Report{}
	ts := metav1.Timestamp{Seconds: a.Generated.Unix()}
	for i := range a.Results {
		r := &a.Results[i]
		if r.Skipped != "" {
			continue
		}
		rep := byNS[r.Object.Namespace]
		if rep == nil {
			rep = newReport(r.Object.Namespace)
			byNS[r.Object.Namespace] = rep
		}
		subject := []corev1.ObjectReference{{
			APIVersion: r.Object.APIVersion, Kind: r.Object.Kind,
			Namespace: r.Object.Namespace, Name: r.Object.Name, UID: types.UID(r.Object.UID),
		}}
		if r.Error != "" {
			rep.Results = append(rep.Results, reportsv1alpha1.ReportResult{
				Source: Source, Policy: PassPolicy, Result: reportsv1alpha1.Result(Error), Severity: reportsv1alpha1.ResultSeverity(High),
				Timestamp: ts, Scored: true, Subjects: subject, Description: r.Error,
			})
			rep.Summary.Error++
			continue
		}
		if r.Compliant() {
			rep.Results = append(rep.Results, reportsv1alpha1.ReportResult{
				Source: Source, Policy: PassPolicy, Result: reportsv1alpha1.Result(Pass), Severity: reportsv1alpha1.ResultSeverity(Info),
				Timestamp: ts, Scored: true, Subjects: subject, Description: "enforcement would admit the object unchanged",
			})
			rep.Summary.Pass++
			continue
		}
		for _, f := range r.Findings {
			props := map[string]string{"type": f.Type, "action": string(f.Action)}
			if f.Field != "" {
				props["field"] = f.Field
			}
			if f.Type == TypeMutation {
				props["intent"] = f.Intent
				if patch, err := json.Marshal(r.Patch); err == nil {
					props["patch"] = string(patch)
				}
			}
			rep.Results = append(rep.Results, reportsv1alpha1.ReportResult{
				Source: Source, Policy: f.Code, Rule: f.Intent, Category: "egress",
				Severity: reportsv1alpha1.ResultSeverity(f.Severity), Result: reportsv1alpha1.Result(f.Outcome),
				Timestamp: ts, Scored: true, Subjects: subject, Description: f.Message, Properties: props,
			})
			switch f.Outcome {
			case Fail:
				rep.Summary.Fail++
			case Warn:
				rep.Summary.Warn++
			}
		}
	}
	namespaces := make([]string, 0, len(byNS))
	for ns := range byNS {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	out := make([]reportsv1alpha1.Report, 0, len(namespaces))
	for _, ns := range namespaces {
		out = append(out, *byNS[ns])
	}
	return out
}

func newReport(namespace string) *reportsv1alpha1.Report {
	return &reportsv1alpha1.Report{
		TypeMeta: metav1.TypeMeta{APIVersion: reportsv1alpha1.SchemeGroupVersion.String(), Kind: "Report"},
		ObjectMeta: metav1.ObjectMeta{
			Name: ReportName, Namespace: namespace,
			Labels: map[string]string{ManagedByLabel: Source},
		},
		Source:  Source,
		Results: []reportsv1alpha1.ReportResult{},
	}
}
