// Package buildinfo says which custos is running, from what the Go
// toolchain stamped into the binary (runtime/debug.ReadBuildInfo): the
// module version (a tag under go install …@vX, "(devel)" in a checkout),
// the VCS commit and its time, and whether the tree was modified. custos
// version prints it and /readyz reports it.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Info is the build's identity. Fields the toolchain did not record are
// "unknown".
type Info struct {
	Module    string `json:"module"`
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildTime string `json:"build_time"`
	Modified  bool   `json:"modified,omitempty"`
	Go        string `json:"go"`
}

// Read returns the running binary's Info.
func Read() Info {
	out := Info{Module: "github.com/custos-dev/custos", Version: "unknown", Commit: "unknown", BuildTime: "unknown", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	return fromBuildInfo(bi, out)
}

func fromBuildInfo(bi *debug.BuildInfo, out Info) Info {
	if bi.Main.Path != "" {
		out.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		out.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		out.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Commit = s.Value
		case "vcs.time":
			out.BuildTime = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		}
	}
	return out
}
