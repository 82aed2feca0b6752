package node

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/custos-dev/custos/sqlite"
)

// MemoryConfig is custos.json's "memory" section: what one node may hold
// in memory (docs/config.md, docs/operations.md "Memory"). The defaults
// fit a node serving 10 million contacts in 256 MiB of RSS
// (docs/benchmarks.md (ag)).
type MemoryConfig struct {
	// LimitMiB is the RSS the node is sized for: the Go heap's soft limit
	// (runtime/debug.SetMemoryLimit) is LimitMiB less the page caches,
	// the mmap window and MemoryOverheadMiB for stacks and the runtime.
	// 0: DefaultMemoryLimitMiB; -1: no soft limit. GOMEMLIMIT in the
	// environment wins over it.
	LimitMiB int `json:"limit_mib,omitempty"`
	// CacheMiB is SQLite's page-cache budget for the whole database
	// handle: half for the writer, half shared out among the readers
	// (0: 64). PostgreSQL ignores it.
	CacheMiB int `json:"cache_mib,omitempty"`
	// Readers is the number of SQLite reader connections (0: 8).
	Readers int `json:"readers,omitempty"`
	// MmapMiB is SQLite's mmap_size per connection (0: none).
	MmapMiB int `json:"mmap_mib,omitempty"`
	// BulkCacheMiB is SQLite's writer page cache while an import or a
	// rewrap commits (0: the writer's half of cache_mib throughout). Twice
	// what it holds beyond that half (its cost in RSS) is taken from the
	// Go heap's soft limit, so that the node keeps to limit_mib.
	BulkCacheMiB int `json:"bulk_cache_mib,omitempty"`
}

// DefaultMemoryLimitMiB is memory.limit_mib's default.
const DefaultMemoryLimitMiB = 256

// MemoryOverheadMiB is what a node holds outside the Go heap and SQLite's
// page caches: goroutine stacks, the runtime, SQLite's own allocations
// beside its caches, and the binary's mapped text.
const MemoryOverheadMiB = 48

// minGoHeapMiB is the least soft limit a memory section may leave the Go
// heap: below it the collector would run all the time.
const minGoHeapMiB = 64

func (m MemoryConfig) cacheMiB() int {
	if m.CacheMiB == 0 {
		return sqlite.DefaultCacheKiB >> 10
	}
	return m.CacheMiB
}

// SQLite returns the database handle's memory settings.
func (m MemoryConfig) SQLite() sqlite.Options {
	return sqlite.Options{CacheKiB: m.cacheMiB() << 10, Readers: m.Readers, MmapKiB: m.MmapMiB << 10, BulkCacheKiB: m.BulkCacheMiB << 10}
}

// bulkExtraMiB is the RSS a bulk job's writer cache adds beyond the
// writer's ordinary share of cache_mib: twice the extra cache, as
// measured (docs/benchmarks.md (az): an import of 1M contacts peaked at
// 185 MiB more RSS with 96 MiB more writer cache; the cause, likely the
// per-page allocations of SQLite under modernc, was not isolated).
func (m MemoryConfig) bulkExtraMiB() int {
	writer, _, _ := m.SQLite().Caches()
	return 2 * max(m.BulkCacheMiB-writer>>10, 0)
}

// GoLimit returns the soft limit of the Go heap the section asks for, in
// bytes, and false with memory.limit_mib -1 (no limit).
func (m MemoryConfig) GoLimit() (int64, bool) {
	limit := m.LimitMiB
	if limit < 0 {
		return 0, false
	}
	if limit == 0 {
		limit = DefaultMemoryLimitMiB
	}
	return int64(limit-m.cacheMiB()-m.bulkExtraMiB()-m.MmapMiB-MemoryOverheadMiB) << 20, true
}

func (m MemoryConfig) validate() error {
	var errs []error
	if m.LimitMiB < -1 {
		errs = append(errs, fmt.Errorf("memory.limit_mib: %d must be -1 (no limit), 0 (the default) or a number of MiB", m.LimitMiB))
	}
	if m.CacheMiB < 0 || m.CacheMiB > 1<<20 {
		errs = append(errs, fmt.Errorf("memory.cache_mib: %d must be 0 (the default) or a number of MiB", m.CacheMiB))
	}
	if m.Readers < 0 || m.Readers > 256 {
		errs = append(errs, fmt.Errorf("memory.readers: %d must be from 0 (the default) to 256", m.Readers))
	}
	if m.MmapMiB < 0 || m.MmapMiB > 1<<20 {
		errs = append(errs, fmt.Errorf("memory.mmap_mib: %d must be 0 (none) or a number of MiB", m.MmapMiB))
	}
	if m.BulkCacheMiB < 0 || m.BulkCacheMiB > 1<<20 {
		errs = append(errs, fmt.Errorf("memory.bulk_cache_mib: %d must be 0 (the writer's share of cache_mib) or a number of MiB", m.BulkCacheMiB))
	}
	if lim, ok := m.GoLimit(); ok && len(errs) == 0 && lim < minGoHeapMiB<<20 {
		errs = append(errs, fmt.Errorf("memory.limit_mib: %d MiB leaves %d MiB for the Go heap after cache_mib, bulk_cache_mib, mmap_mib and %d MiB of overhead; at least %d are needed",
			cmp.Or(m.LimitMiB, DefaultMemoryLimitMiB), max(lim, 0)>>20, MemoryOverheadMiB, minGoHeapMiB))
	}
	return errors.Join(errs...)
}
