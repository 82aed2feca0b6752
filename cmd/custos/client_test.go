package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestAllItemsFollowsPages: a CLI listing reads every page, not the first.
func TestAllItemsFollowsPages(t *testing.T) {
	const total, per = 23, 5
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := 0
		if a := r.URL.Query().Get("after"); a != "" {
			n, _ := strconv.Atoi(a)
			start = n + 1
		}
		if r.URL.Query().Get("status") != "pending" {
			t.Errorf("query lost: %s", r.URL.RawQuery)
		}
		var page struct {
			Items []int  `json:"items"`
			Next  string `json:"next,omitempty"`
		}
		for i := start; i < min(total, start+per); i++ {
			page.Items = append(page.Items, i)
		}
		if start+per < total {
			page.Next = fmt.Sprint(start + per - 1)
		}
		json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	got, err := allItems[int](context.Background(), &client{base: srv.URL, http: srv.Client()}, "/v1/things?status=pending")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != total || got.Items[total-1] != total-1 {
		t.Fatalf("read %d items (%v), want %d", len(got.Items), got.Items, total)
	}
}
