package vault

// SetAuthCacheOff makes Authenticate skip its cache: a benchmark's
// uncached baseline, measured in the same run as the cached path.
func SetAuthCacheOff(v *Vault, off bool) { v.auth.off = off }
