package blastreport

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
)

// TenantSummary counts what a report's subject did to one tenant.
type TenantSummary struct {
	Tenant string `json:"tenant"`
	// Tokens counts the distinct contact tokens per kind of access.
	Tokens map[string]int `json:"tokens"`
	// Contacts sums, per kind, the counts of entries that name no tokens
	// (an export of n contacts).
	Contacts   map[string]int `json:"contacts"`
	Principals []string       `json:"principals"`
	Entries    int            `json:"entries"`
	First      time.Time      `json:"first"`
	Last       time.Time      `json:"last"`
}

// Summarize counts the report's facts per tenant, in tenant order.
func Summarize(r *custos.BlastReport) []TenantSummary {
	by := map[string]*TenantSummary{}
	entries := map[string]map[uint64]bool{}
	var order []string
	for _, f := range r.Facts {
		s := by[f.Tenant]
		if s == nil {
			s = &TenantSummary{Tenant: f.Tenant, Tokens: map[string]int{}, Contacts: map[string]int{}, First: f.First, Last: f.Last}
			by[f.Tenant], entries[f.Tenant] = s, map[uint64]bool{}
			order = append(order, f.Tenant)
		}
		if f.Token != "" {
			s.Tokens[f.Kind]++
		}
		s.Contacts[f.Kind] += f.Contacts
		if !slices.Contains(s.Principals, f.Principal) {
			s.Principals = append(s.Principals, f.Principal)
		}
		for _, e := range f.Entries {
			entries[f.Tenant][e] = true
		}
		s.First, s.Last = minTime(s.First, f.First), maxTime(s.Last, f.Last)
	}
	slices.Sort(order)
	out := make([]TenantSummary, 0, len(order))
	for _, t := range order {
		s := by[t]
		s.Entries = len(entries[t])
		slices.Sort(s.Principals)
		out = append(out, *s)
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

var kinds = []string{custos.AccessRead, custos.AccessReveal, custos.AccessExport, custos.AccessSend, custos.AccessMaskedView,
	custos.AccessLookup, custos.AccessWrite, custos.AccessOther, custos.AccessRefused}

// Markdown renders a summary as a Markdown table (ids, counts and times;
// never an address).
func Markdown(r *custos.BlastReport, ss []TenantSummary) string {
	var b strings.Builder
	q := r.Query
	subject := ""
	for _, s := range []struct{ k, v string }{{"principal", q.Principal}, {"key", q.Key}, {"source", q.Source}, {"tenant", q.Tenant}} {
		if s.v != "" {
			subject = s.k + " " + s.v
		}
	}
	fmt.Fprintf(&b, "# Blast radius of %s\n\n", subject)
	if !q.Since.IsZero() || !q.Until.IsZero() {
		fmt.Fprintf(&b, "Window: %s to %s.\n\n", fmtTime(q.Since, "the beginning"), fmtTime(q.Until, "the checkpoint"))
	}
	if r.Completeness.Complete {
		fmt.Fprintf(&b, "Complete: the report covers %s 1…%d with no gap up to the checkpoint.\n\n", r.Completeness.Sequence, r.Completeness.Total)
	} else {
		b.WriteString("Completeness is not proven for this subject (see docs/blast-radius.md).\n\n")
	}
	b.WriteString("| tenant | principals | entries | first | last |")
	for _, k := range kinds {
		b.WriteString(" " + k + " |")
	}
	b.WriteString("\n|---|---|---|---|---|" + strings.Repeat("---|", len(kinds)) + "\n")
	for _, s := range ss {
		t := s.Tenant
		if t == "" {
			t = "(none)"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s |", t, strings.Join(s.Principals, ", "), s.Entries, s.First.UTC().Format(time.RFC3339), s.Last.UTC().Format(time.RFC3339))
		for _, k := range kinds {
			cell := ""
			if n := s.Tokens[k]; n > 0 {
				cell = fmt.Sprintf("%d tokens", n)
			}
			if n := s.Contacts[k]; n > 0 {
				cell = strings.TrimPrefix(cell+fmt.Sprintf(", %d contacts", n), ", ")
			}
			b.WriteString(" " + cell + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\nThe counts in tokens are distinct contact tokens; contacts are counts of entries that name none (an export). Each tenant's file in this directory proves its part: `custos verify-report FILE --log-key log.pub`.\n")
	return b.String()
}

func fmtTime(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format(time.RFC3339)
}
