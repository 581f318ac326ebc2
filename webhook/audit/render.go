package audit

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"io"
	"path/filepath"
	"strings"
)

// Format is a report file's format.
type Format string

// The report formats.
const (
	FormatJSON     Format = "json"
	FormatMarkdown Format = "md"
	FormatHTML     Format = "html"
)

// FormatOf is the format a report file's extension asks for.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return FormatJSON, nil
	case ".md", ".markdown":
		return FormatMarkdown, nil
	case ".html", ".htm":
		return FormatHTML, nil
	}
	return "", fmt.Errorf("report file %q: the extension must be .html, .json or .md", path)
}

// Write renders the audit in format.
func Write(w io.Writer, format Format, a *Audit) error {
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			*Audit
			Summary Summary `json:"summary"`
		}{a, Summarize(a)})
	case FormatMarkdown:
		return writeMarkdown(w, a)
	case FormatHTML:
		return htmlReport.Execute(w, newView(a))
	}
	return fmt.Errorf("unknown report format %q", format)
}

// view is what the HTML template shows: the summary, then the objects with
// findings grouped by namespace.
type view struct {
	*Audit
	Summary    Summary
	Namespaces []namespaceView
}

type namespaceView struct {
	Namespace string
	Results   []*Result
}

func newView(a *Audit) view {
	v := view{Audit: a, Summary: Summarize(a)}
	index := map[string]int{}
	for i := range a.Results {
		r := &a.Results[i]
		if r.Skipped != "" || r.Compliant() {
			continue
		}
		k, ok := index[r.Object.Namespace]
		if !ok {
			k = len(v.Namespaces)
			index[r.Object.Namespace] = k
			v.Namespaces = append(v.Namespaces, namespaceView{Namespace: r.Object.Namespace})
		}
		v.Namespaces[k].Results = append(v.Namespaces[k].Results, r)
	}
	return v
}

// diffHTML is a unified diff as one span per line, classed by its kind for
// colouring (add, del, hunk, head, ctx), the text escaped. Escaping here
// rather than in the template keeps a report of thousands of diffs quick.
func diffHTML(diff string) template.HTML {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(diff, "\n"), "\n") {
		class := "ctx"
		switch {
		case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
			class = "head"
		case strings.HasPrefix(l, "@@"):
			class = "hunk"
		case strings.HasPrefix(l, "+"):
			class = "add"
		case strings.HasPrefix(l, "-"):
			class = "del"
		}
		b.WriteString(`<span class="` + class + `">`)
		b.WriteString(html.EscapeString(l))
		b.WriteString("</span>")
	}
	return template.HTML(b.String()) // #nosec: every line is escaped above
}

//go:embed report.html.tmpl
var htmlTemplate string

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"diffHTML": diffHTML,
	"ref":      func(o Object) string { return o.Kind + " " + o.Namespace + "/" + o.Name },
}).Parse(htmlTemplate))

func writeMarkdown(w io.Writer, a *Audit) error {
	s := Summarize(a)
	var b strings.Builder
	fmt.Fprintf(&b, "# egress-guard audit\n\nGenerated %s; default enforcement `%s`.\n\n", a.Generated.Format("2006-01-02 15:04:05 MST"), a.Enforcement)
	fmt.Fprintf(&b, "%d objects audited: %d compliant, %d that enforcement would deny or change (%d failing and %d warning findings), %d that could not be evaluated, %d skipped.\n\n",
		s.Objects, s.Compliant, s.WithFindings, s.Fail, s.Warn, s.Errors, s.Skipped)
	b.WriteString("| namespace | objects | compliant | with findings | findings by rule |\n|---|---|---|---|---|\n")
	for _, ns := range s.Namespaces {
		var rules []string
		for _, rc := range ns.Rules {
			rules = append(rules, fmt.Sprintf("%s: %d fail, %d warn", rc.Code, rc.Fail, rc.Warn))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s |\n", ns.Namespace, ns.Objects, ns.Compliant, ns.WithFindings, strings.Join(rules, "; "))
	}
	for _, ns := range newView(a).Namespaces {
		fmt.Fprintf(&b, "\n## Namespace %s\n", ns.Namespace)
		for _, r := range ns.Results {
			fmt.Fprintf(&b, "\n### %s %s/%s\n\n", r.Object.Kind, r.Object.Namespace, r.Object.Name)
			if r.Error != "" {
				fmt.Fprintf(&b, "- could not be evaluated: %s\n", mdEscape(r.Error))
			}
			for _, f := range r.Findings {
				field := ""
				if f.Field != "" {
					field = " `" + f.Field + "`"
				}
				fmt.Fprintf(&b, "- **%s** %s (%s, action %s)%s: %s\n", f.Code, f.Outcome, f.Type, f.Action, field, mdEscape(f.Message))
			}
			if r.Diff != "" {
				fmt.Fprintf(&b, "\nWould-be change:\n\n```diff\n%s```\n", r.Diff)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdEscape keeps a message from being read as Markdown markup.
func mdEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "<", "&lt;", ">", "&gt;", "|", `\|`)
	return r.Replace(s)
}
