package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// clusterOptions describe a deployment: the emulated organization, Redis,
// the balancer and N `connector serve` replicas behind it, with the webhook
// registered the way an admin would.
type clusterOptions struct {
	Emulator     emulator.Options
	Replicas     int  // default 1
	PersistRedis bool // appendonly yes, appendfsync always
	Config       connectorConfig
}

type cluster struct {
	st       *stage
	org      *org
	redis    *redisServer
	lb       *balancer
	replicas []*replica
	cfg      connectorConfig
}

func (s *stage) startCluster(ctx context.Context, o clusterOptions) (*cluster, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	c := &cluster{st: s}
	var err error
	if c.org, err = startOrg(o.Emulator); err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	s.onClose(c.org.close)
	if c.redis, err = startRedis(filepath.Join(s.dir, "redis"), o.PersistRedis); err != nil {
		return nil, err
	}
	s.onClose(c.redis.kill)
	if c.lb, err = startBalancer(); err != nil {
		return nil, err
	}
	s.onClose(c.lb.close)
	c.cfg = o.Config
	c.cfg.Org, c.cfg.RedisURL, c.cfg.PublicURL = c.org, c.redis.URL, c.lb.URL
	for i := range o.Replicas {
		r, err := s.startReplica(fmt.Sprintf("replica-%d", i+1), c.cfg)
		if err != nil {
			return nil, err
		}
		c.replicas = append(c.replicas, r)
		c.lb.add(r.Addr)
	}
	if err := s.registerWebhook(ctx, c.replicas[0]); err != nil {
		return nil, err
	}
	return c, nil
}
