package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/custos-dev/custos", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	got := fromBuildInfo(bi, Info{Version: "unknown", Commit: "unknown", BuildTime: "unknown"})
	want := Info{Module: "github.com/custos-dev/custos", Version: "v1.2.3", Commit: "abc123", BuildTime: "2026-12-01T10:00:00Z", Modified: true, Go: "go1.26.8"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
