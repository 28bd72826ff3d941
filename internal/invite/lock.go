package invite

import (
	"context"
	"sync"
	"time"
)

// memLocker is the in-process Locker: one channel-based mutex per key, so
// waiting honours ctx. The ttl is not needed in one process (unlock always
// runs via defer) and is ignored.
type memLocker struct {
	mu    sync.Mutex
	locks map[string]*memLock
}

type memLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

func newMemLocker() *memLocker { return &memLocker{locks: map[string]*memLock{}} }

func (l *memLocker) Lock(ctx context.Context, key string, _ time.Duration) (func(), error) {
	l.mu.Lock()
	m, ok := l.locks[key]
	if !ok {
		m = &memLock{ch: make(chan struct{}, 1)}
		l.locks[key] = m
	}
	m.refs++
	l.mu.Unlock()
	select {
	case m.ch <- struct{}{}:
	case <-ctx.Done():
		l.release(key, m)
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-m.ch
			l.release(key, m)
		})
	}, nil
}

// release drops a reference and forgets idle keys so the map stays small.
func (l *memLocker) release(key string, m *memLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m.refs--
	if m.refs == 0 {
		delete(l.locks, key)
	}
}
