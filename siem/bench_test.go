package siem_test

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/loadmix"
	"github.com/custos-dev/custos/siem"
)

// BenchmarkSyslogAudit: what the detector pays per entry to hand it to a
// SIEM (a copy into the queue; the writer maps and formats), with a
// collector on 127.0.0.1 reading as fast as it can. The caller outruns
// any writer here, so most are dropped: the figure is the caller's cost,
// BenchmarkSyslogWriter the rate a collector can be fed.
func BenchmarkSyslogAudit(b *testing.B) { benchSyslog(b, false) }

// BenchmarkSyslogWriter: the writer's sustained rate — OCSF mapping, RFC
// 5424 building, framing and writing to a collector on 127.0.0.1 — with
// the caller waiting whenever half the buffer is in use, so nothing is
// dropped.
func BenchmarkSyslogWriter(b *testing.B) { benchSyslog(b, true) }

func benchSyslog(b *testing.B, paced bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	s, err := siem.Open(siem.Config{Addr: ln.Addr().String(), Buffer: 100_000}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	leaves := make([]audit.Leaf, 10_000)
	for i := range leaves {
		leaves[i] = loadmix.Benign(i)
		leaves[i].Time = t0.Add(time.Duration(i) * time.Millisecond)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for paced && uint64(i)-(s.Sent()+s.Dropped()) > 50_000 {
			runtime.Gosched()
		}
		s.Audit(uint64(i), &leaves[i%len(leaves)])
	}
	for paced && s.Sent()+s.Dropped() < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(s.Dropped()), "dropped")
}
