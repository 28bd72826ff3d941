package main

import (
	"context"
	"fmt"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

type deliveredResult struct {
	Samples     int  `json:"samples"`
	ClickToSent dist `json:"click_to_sent"`
	ClickToDlvd dist `json:"click_to_delivered"`
	SentToDlvd  dist `json:"sent_to_delivered"`
	NotSeenSent int  `json:"sent_not_observed"` // Delivered arrived before a Sent was seen
}

// benchDelivered: click → Delivered with a 0 s emulated sync delay (the
// email is Sent when SendEmail returns), so the figure is the connector's
// own overhead: the invitation, then the email webhook, the queue and the
// delivery write-back.
func benchDelivered(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "delivered", Title: "Click → Delivered with a 0 s emulated server-side sync (the connector's own overhead)"}
	samples := 200
	if o.quick {
		samples = 40
	}
	res, err := runDelivered(ctx, h, samples)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"interval", "p50", "p95", "p99", "max"}
	for _, r := range []struct {
		name string
		d    dist
	}{{"click → Sent", res.ClickToSent}, {"click → Delivered", res.ClickToDlvd}, {"Sent → Delivered", res.SentToDlvd}} {
		sec.row(r.name, ms(r.d.P50), ms(r.d.P95), ms(r.d.P99), ms(r.d.Max))
	}
	sec.check(res.ClickToDlvd.N == samples, "%d of %d contacts reached Delivered", res.ClickToDlvd.N, samples)
	sec.note("%d clicks one after another on one `connector serve` (webhook only, no poll), emulated server-side sync with `Delay: 0` (Sent before SendEmail returns) and no mailbox limits, the contact status read from the emulator every millisecond. Sent → Delivered is the email step's webhook, the queue and the delivery write-back. %d samples went Requested → Delivered between two reads.", samples, res.NotSeenSent)
	sec.Data = res
	return sec
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func runDelivered(ctx context.Context, h *harness, samples int) (*deliveredResult, error) {
	st, err := h.stage("bench-delivered")
	if err != nil {
		return nil, err
	}
	defer st.close()
	// Mailbox limits off: the 31st email of a minute would otherwise wait
	// for the next minute (Exchange Online's 30 messages per minute).
	c, err := st.startCluster(ctx, clusterOptions{
		Emulator: emulator.Options{EmailSync: emulator.EmailSyncOptions{Limits: emulator.MailboxLimits{Messages: -1, Recipients: -1}}},
		Config:   connectorConfig{},
	})
	if err != nil {
		return nil, err
	}
	cs, err := c.org.insertContacts("delivered", samples, nil)
	if err != nil {
		return nil, err
	}
	res := &deliveredResult{Samples: samples}
	var toSent, toDlvd, sentDlvd []time.Duration
	for _, ct := range cs {
		start := time.Now()
		if err := c.org.clickPortal(ctx, ct.ID, partnerPortal, clickRoles); err != nil {
			return nil, err
		}
		var sentAt time.Time
		deadline := start.Add(30 * time.Second)
		for {
			st, _ := c.org.statusOf(ct.ID)
			now := time.Now()
			if st == emulator.InviteSent && sentAt.IsZero() {
				sentAt = now
			}
			if st == emulator.InviteDelivered {
				toDlvd = append(toDlvd, now.Sub(start))
				if sentAt.IsZero() {
					res.NotSeenSent++
				} else {
					toSent = append(toSent, sentAt.Sub(start))
					sentDlvd = append(sentDlvd, now.Sub(sentAt))
				}
				break
			}
			if now.After(deadline) || ctx.Err() != nil {
				return res, fmt.Errorf("contact %s not Delivered 30s after the click (status %d)", ct.ID, st)
			}
			time.Sleep(time.Millisecond)
		}
	}
	res.ClickToSent, res.ClickToDlvd, res.SentToDlvd = summarize(toSent), summarize(toDlvd), summarize(sentDlvd)
	return res, nil
}

type smtpThroughputResult struct {
	Sequential  float64 `json:"sender_msgs_per_s_1"`
	Parallel    float64 `json:"sender_msgs_per_s_8"`
	Messages    int     `json:"sender_messages"`
	Invitations int     `json:"invitations"`
	EndToEnd    float64 `json:"invitations_delivered_per_s"`
	Elapsed     string  `json:"end_to_end_elapsed"`
}

// benchSMTP: SMTP channel submit throughput against the in-process server,
// the sender alone and the whole connector (click → Delivered).
func benchSMTP(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "smtp", Title: "SMTP channel throughput against an in-process SMTP server"}
	msgs, invs := 2000, 500
	if o.quick {
		msgs, invs = 300, 100
	}
	res, err := runSMTPThroughput(ctx, h, msgs, invs)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"what", "rate"}
	sec.row(fmt.Sprintf("SMTPSender.Send, one at a time (%d messages)", res.Messages), fmt.Sprintf("%.0f messages/s", res.Sequential))
	sec.row(fmt.Sprintf("SMTPSender.Send, 8 at a time (%d messages)", res.Messages), fmt.Sprintf("%.0f messages/s", res.Parallel))
	sec.row(fmt.Sprintf("connector, click → Delivered (%d invitations)", res.Invitations), fmt.Sprintf("%.1f invitations/s", res.EndToEnd))
	sec.check(res.EndToEnd > 0, "no invitation delivered")
	sec.note("One TCP connection per message (connect, EHLO, MAIL, RCPT, DATA, QUIT) to a go-smtp server on loopback without TLS. End to end: one `connector serve` with 4 workers, `email.channel: smtp`; each invitation is an adx_invitation with its email created as a draft, the SMTP submission, the Message-ID update and SendEmail(IssueSend=false) in the emulator, then the contact's Delivered write-back; took %s.", res.Elapsed)
	sec.Data = res
	return sec
}

func runSMTPThroughput(ctx context.Context, h *harness, msgs, invs int) (*smtpThroughputResult, error) {
	st, err := h.stage("bench-smtp")
	if err != nil {
		return nil, err
	}
	defer st.close()
	sink, err := startSMTPSink(0, 1)
	if err != nil {
		return nil, err
	}
	st.onClose(sink.close)
	res := &smtpThroughputResult{Messages: msgs, Invitations: invs}
	if res.Sequential, err = senderThroughput(ctx, sink, msgs, 1); err != nil {
		return res, err
	}
	if res.Parallel, err = senderThroughput(ctx, sink, msgs, 8); err != nil {
		return res, err
	}
	c, err := st.startCluster(ctx, clusterOptions{Config: connectorConfig{EmailExtra: "      channel: smtp\n", TopLevel: sink.smtpYAML()}})
	if err != nil {
		return res, err
	}
	cs, err := c.org.insertContacts("smtpbench", invs, nil)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if _, err := c.org.clickAll(ctx, cs, 8, 0); err != nil {
		return res, err
	}
	counts, err := c.org.waitOutcomes(ctx, cs, 5*time.Minute, nil)
	elapsed := time.Since(start)
	res.Elapsed = elapsed.Round(100 * time.Millisecond).String()
	if err != nil {
		return res, err
	}
	res.EndToEnd = float64(counts[emulator.InviteDelivered]) / elapsed.Seconds()
	return res, nil
}
