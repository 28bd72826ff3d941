package identity_test

import (
	"context"
	"testing"
	"time"
)

// BenchmarkFinish measures Finish (code exchange + ID token verification)
// against zitadel's provider in the same process, with discovery and keys
// already cached. ns/op and allocs include the provider's token endpoint;
// rp-ns/op subtracts the time its handler ran, leaving the connector's own
// part plus the TLS round trip. The browser steps before Finish are not
// timed.
func BenchmarkFinish(b *testing.B) {
	for _, client := range []string{"app-basic", "app-post", "app-jwt"} {
		b.Run(client, func(b *testing.B) {
			o := startOP(b)
			p, _ := rp(b, o, client, nil)
			if _, err := signIn(b, o, p); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			o.tokenNs.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				si, err := p.Begin(ctx, redirect, nil)
				if err != nil {
					b.Fatal(err)
				}
				cb := o.mustAuthorize(si.URL)
				b.StartTimer()
				if _, err := p.Finish(ctx, si.Pending, cb); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			provider := time.Duration(o.tokenNs.Load())
			b.ReportMetric(float64(provider)/float64(b.N), "provider-ns/op")
			b.ReportMetric(float64(b.Elapsed()-provider)/float64(b.N), "rp-ns/op")
		})
	}
}

// BenchmarkBegin measures starting a sign-in with discovery cached.
func BenchmarkBegin(b *testing.B) {
	o := startOP(b)
	p, _ := rp(b, o, "app-basic", nil)
	ctx := context.Background()
	if _, err := p.Begin(ctx, redirect, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Begin(ctx, redirect, nil); err != nil {
			b.Fatal(err)
		}
	}
}
