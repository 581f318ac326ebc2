package audit

import "sort"

// Summary counts an audit's objects and findings.
type Summary struct {
	Objects   int `json:"objects"`
	Skipped   int `json:"skipped"`
	Compliant int `json:"compliant"`
	// WithFindings are the objects enforcement would deny or change.
	WithFindings int `json:"withFindings"`
	Fail         int `json:"fail"`
	Warn         int `json:"warn"`
	// Errors are the objects that could not be evaluated.
	Errors     int                `json:"errors"`
	Namespaces []NamespaceSummary `json:"namespaces"`
}

// NamespaceSummary counts one namespace's objects and findings per rule.
type NamespaceSummary struct {
	Namespace    string      `json:"namespace"`
	Objects      int         `json:"objects"`
	Compliant    int         `json:"compliant"`
	WithFindings int         `json:"withFindings"`
	Errors       int         `json:"errors"`
	Rules        []RuleCount `json:"rules"`
}

// RuleCount counts the findings of one rule.
type RuleCount struct {
	Code string `json:"code"`
	Fail int    `json:"fail"`
	Warn int    `json:"warn"`
}

// Summarize counts the audit per namespace (sorted) and rule (sorted).
func Summarize(a *Audit) Summary {
	s := Summary{Namespaces: []NamespaceSummary{}}
	byNS := map[string]*NamespaceSummary{}
	byRule := map[string]map[string]*RuleCount{}
	for i := range a.Results {
		r := &a.Results[i]
		s.Objects++
		if r.Skipped != "" {
			s.Skipped++
			continue
		}
		ns := byNS[r.Object.Namespace]
		if ns == nil {
			ns = &NamespaceSummary{Namespace: r.Object.Namespace, Rules: []RuleCount{}}
			byNS[r.Object.Namespace] = ns
			byRule[r.Object.Namespace] = map[string]*RuleCount{}
		}
		ns.Objects++
		if r.Error != "" {
			s.Errors++
			ns.Errors++
			continue
		}
		if r.Compliant() {
			s.Compliant++
			ns.Compliant++
			continue
		}
		s.WithFindings++
		ns.WithFindings++
		for _, f := range r.Findings {
			rc := byRule[r.Object.Namespace][f.Code]
			if rc == nil {
				rc = &RuleCount{Code: f.Code}
				byRule[r.Object.Namespace][f.Code] = rc
			}
			if f.Outcome == Warn {
				rc.Warn++
				s.Warn++
			} else {
				rc.Fail++
				s.Fail++
			}
		}
	}
	for name, ns := range byNS {
		for _, rc := range byRule[name] {
			ns.Rules = append(ns.Rules, *rc)
		}
		sort.Slice(ns.Rules, func(i, j int) bool { return ns.Rules[i].Code < ns.Rules[j].Code })
		s.Namespaces = append(s.Namespaces, *ns)
	}
	sort.Slice(s.Namespaces, func(i, j int) bool { return s.Namespaces[i].Namespace < s.Namespaces[j].Namespace })
	return s
}
