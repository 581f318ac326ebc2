package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/egress-guard/egress-guard/test/harness"
)

// width is the widest line the printer writes on purpose (diff lines and
// file paths may be longer).
const width = 96

// printer writes the demo's report: plain text for a terminal.
type printer struct {
	w io.Writer
}

func newPrinter(w io.Writer) *printer { return &printer{w: w} }

func (p *printer) line(format string, args ...any) {
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *printer) blank() { fmt.Fprintln(p.w) }

func (p *printer) title(s string) {
	p.line("%s\n%s", s, strings.Repeat("=", len(s)))
	p.blank()
}

// step is a line printed when something starts and finished when it ends.
type step struct {
	p     *printer
	start time.Time
}

// begin prints "==> what ... " and leaves the line open for end.
func (p *printer) begin(format string, args ...any) *step {
	fmt.Fprintf(p.w, "==> "+format+" ... ", args...)
	return &step{p: p, start: time.Now()}
}

// end finishes the step's line with ok or FAILED and the time it took.
func (s *step) end(err error) {
	took := time.Since(s.start)
	status := "ok"
	if err != nil {
		status = "FAILED"
	}
	if took >= 100*time.Millisecond {
		fmt.Fprintf(s.p.w, "%s (%.1fs)\n", status, took.Seconds())
	} else {
		fmt.Fprintln(s.p.w, status)
	}
}

// detail is an indented line about the step before.
func (p *printer) detail(format string, args ...any) {
	p.line("    "+format, args...)
}

// paragraph prints s wrapped and indented.
func (p *printer) paragraph(s string) {
	p.line("%s", wrap(s, "  ", width))
	p.blank()
}

func (p *printer) block(title, body string) {
	p.line("%s\n%s", title, harness.Indent(body, "    "))
}

func (p *printer) scenarioHeader(i, n int, name string) {
	p.blank()
	head := fmt.Sprintf("Scenario %d of %d: %s ", i, n, name)
	p.line("%s%s", head, strings.Repeat("-", max(3, width-len(head))))
}

var expectations = map[outcome]string{
	accepted: "accepted unchanged",
	mutated:  "mutated into mutate-expected.yaml",
	rejected: "rejected with the rule codes they list",
}

func (p *printer) fileHeader(name string, n int, expect outcome) {
	objects := "objects"
	if n == 1 {
		objects = "object"
	}
	p.blank()
	p.line("  %s: %d %s, expected %s", name, n, objects, expectations[expect])
	p.line("  $ kubectl apply -o json -f -      (each object on stdin in turn)")
}

// object prints one applied object: its outcome and what explains it.
func (p *printer) object(o *objectResult) {
	head := fmt.Sprintf("    %-9s %s", o.got, o.doc.Ref())
	if o.note != "" {
		head += "  (" + o.note + ")"
	}
	p.line("%s", head)
	const pad = "              "
	for _, w := range o.warnings {
		p.line("%s", wrap("Warning: "+w, pad, width))
	}
	if o.diff != "" {
		p.line("%s", harness.Indent(o.diff, pad))
	}
	if o.message != "" {
		head, violations := splitViolations(o.message)
		p.line("%s", wrap(head, pad, width))
		for _, v := range violations {
			p.line("%s", wrapHanging(v, pad+"  ", pad+"    ", width))
		}
	}
	for _, problem := range o.problems {
		first, rest, _ := strings.Cut(problem, "\n")
		p.line("%s!! NOT AS EXPECTED: %s", pad, first)
		if rest != "" {
			p.line("%s", harness.Indent(rest, pad+"   "))
		}
	}
}

// summary prints the table of outcomes per scenario and reports whether
// every object behaved as expected.
func (p *printer) summary(results []*scenarioResult) bool {
	p.blank()
	p.line("Summary")
	p.line("=======")
	p.blank()
	nameWidth := len("scenario")
	for _, r := range results {
		nameWidth = max(nameWidth, len(r.name))
	}
	row := func(name string, a, m, rj any, took, check string) {
		p.line("  %-*s  %8v  %7v  %8v  %5s  %s", nameWidth, name, a, m, rj, took, check)
	}
	rule := func() {
		row(strings.Repeat("-", nameWidth), "--------", "-------", "--------", "-----", "-----------")
	}
	row("scenario", "accepted", "mutated", "rejected", "time", "as expected")
	rule()
	var total [3]int
	good := 0
	var problems []string
	for _, r := range results {
		counts := [3]int{r.count(accepted), r.count(mutated), r.count(rejected)}
		for i := range total {
			total[i] += counts[i]
		}
		bad := r.problems()
		check := "yes"
		switch {
		case r.err != nil:
			check = "ERROR"
			problems = append(problems, fmt.Sprintf("%s: %v", r.name, firstLine(r.err.Error())))
		case len(bad) > 0:
			check = fmt.Sprintf("NO (%d)", len(bad))
		default:
			good++
		}
		for _, o := range bad {
			problems = append(problems, fmt.Sprintf("%s: %s: %s", r.name, o.doc, firstLine(o.problems[0])))
		}
		row(r.name, counts[0], counts[1], counts[2], fmt.Sprintf("%.1fs", r.took.Seconds()), check)
	}
	rule()
	row("total", total[0], total[1], total[2], "", fmt.Sprintf("%d of %d", good, len(results)))
	p.blank()
	if len(problems) > 0 {
		p.line("Not as expected:")
		for _, s := range problems {
			p.line("%s", wrap(s, "  - ", width))
		}
		return false
	}
	p.line("%s", wrap("Every scenario behaved as expected: compliant.yaml accepted unchanged, "+
		"mutate.yaml mutated into mutate-expected.yaml, rejected.yaml rejected with the rule codes "+
		"its objects list.", "", width))
	return true
}

// ruleCode finds "CODE123: " where a violation starts in a denial message.
var ruleCode = regexp.MustCompile(`(^|: |; )[A-Z]+[0-9]+: `)

// splitViolations splits kubectl's denial message before each violation
// ("...denied the request: ...: EGR101: ...; EGR202: ..."), so that every
// violation can stand on a line of its own. The text is kept as it is.
func splitViolations(msg string) (head string, violations []string) {
	locs := ruleCode.FindAllStringSubmatchIndex(msg, -1)
	if len(locs) == 0 {
		return msg, nil
	}
	// locs[i][3] is the end of the separator, where the code starts.
	head = msg[:locs[0][3]]
	for i, loc := range locs {
		end := len(msg)
		if i+1 < len(locs) {
			end = locs[i+1][3]
		}
		violations = append(violations, strings.TrimSpace(msg[loc[3]:end]))
	}
	return strings.TrimSpace(head), violations
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// wrap breaks each line of s at spaces so that lines, with prefix, fit in
// width; words longer than that stay whole. Continuation lines are indented
// like prefix.
func wrap(s, prefix string, width int) string {
	return wrapHanging(s, prefix, strings.Repeat(" ", len(prefix)), width)
}

// wrapHanging is wrap with cont before every line but the first.
func wrapHanging(s, prefix, cont string, width int) string {
	var out []string
	for _, para := range strings.Split(s, "\n") {
		line := prefix
		empty := true
		for _, word := range strings.Fields(para) {
			if !empty && len(line)+1+len(word) > width {
				out = append(out, line)
				line, empty = cont, true
			}
			if !empty {
				line += " "
			}
			line += word
			empty = false
		}
		out = append(out, line)
		prefix = cont
	}
	return strings.Join(out, "\n")
}
