package api

import (
	"context"
	"net/http"

	"github.com/d365portal/connector/internal/bulk"
)

// ScheduleSource reads the senders' schedule from the pacing counters.
type ScheduleSource func(ctx context.Context) (bulk.Schedule, error)

// getSchedule answers where each sender stands: queued, sent in its
// 24-hour window, next free slot. Without pacing the list is empty.
func (s *server) getSchedule(w http.ResponseWriter, r *http.Request) error {
	sc := bulk.Schedule{At: s.now(), Senders: []bulk.SenderSchedule{}}
	if s.schedule != nil {
		got, err := s.schedule(r.Context())
		if err != nil {
			return err
		}
		if got.Senders == nil {
			got.Senders = []bulk.SenderSchedule{}
		}
		sc = got
	}
	return writeJSON(w, http.StatusOK, sc)
}
