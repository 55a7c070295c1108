package run

import (
	"context"
	"errors"
	"fmt"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/debugpod"
	"github.com/trace-svc/kubectl-trace-svc/collectors/kubeproxy"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
)

// collectLive reads the rules of nodes without a saved dump with the
// configured collector, each node's output spooled to a file in spool. A
// refusal that concerns every node (RBAC, Pod Security, no API server)
// becomes every node's error.
func (cfg Config) collectLive(ctx context.Context, facts *cluster.Facts, nodes []string, spool string) []nodedump.NodeResult {
	if cfg.Collector == CollectorKubeProxy {
		return cfg.collectFromKubeProxy(ctx, facts, nodes, spool)
	}
	return cfg.collectWithDebugPods(ctx, facts, nodes, spool)
}

// failAll gives every node the same error.
func failAll(nodes []string, err error) []nodedump.NodeResult {
	out := make([]nodedump.NodeResult, len(nodes))
	for i, n := range nodes {
		out[i] = nodedump.NodeResult{Node: n, Err: err}
	}
	return out
}

// collectFromKubeProxy checks permissions once, then execs the dump script
// into each node's kube-proxy pod (bounded in parallel); no pod is created.
func (cfg Config) collectFromKubeProxy(ctx context.Context, facts *cluster.Facts, nodes []string, spool string) []nodedump.NodeResult {
	if facts.KubeProxyPodsErr != nil {
		return failAll(nodes, fmt.Errorf("--collector kube-proxy: listing kube-proxy pods was forbidden (%w); use --collector debugpod", facts.KubeProxyPodsErr))
	}
	if cfg.RESTConfig == nil {
		return failAll(nodes, errors.New("no API server to exec into kube-proxy through (offline: pass --dump NODE=FILE for every node)"))
	}
	checks := append(cluster.TraceAccessChecks(cfg.Namespace), kubeproxy.AccessChecks()...)
	if err := cluster.CheckAccess(ctx, cfg.Client, checks); err != nil {
		return failAll(nodes, err)
	}
	opts := kubeproxy.Options{Executor: cfg.DebugPod.Executor,
		Run: nodedump.RunOptions{Script: cfg.scriptOptions(), MaxOutput: cfg.DebugPod.MaxOutput, SpoolDir: spool}}
	res, err := kubeproxy.CollectAll(ctx, cfg.Client, cfg.RESTConfig, facts.KubeProxyPods, nodes, opts, cfg.Parallel, cfg.Progress)
	if err != nil {
		return failAll(nodes, err)
	}
	return res
}

// collectWithDebugPods checks permissions once, then runs a debug pod on
// each node (bounded in parallel) and returns what each gave.
func (cfg Config) collectWithDebugPods(ctx context.Context, facts *cluster.Facts, nodes []string, spool string) []nodedump.NodeResult {
	if cfg.RESTConfig == nil {
		return failAll(nodes, errors.New("no API server to run a debug pod through (offline: pass --dump NODE=FILE for every node)"))
	}
	opts := cfg.DebugPod
	opts.Script = cfg.scriptOptions()
	opts.SpoolDir = spool
	checks := append(cluster.TraceAccessChecks(cfg.Namespace), debugpod.AccessChecks(opts.Namespace)...)
	if err := cluster.CheckAccess(ctx, cfg.Client, checks); err != nil {
		return failAll(nodes, err)
	}
	if opts.Image == "" {
		opts.Image = debugpod.DefaultImage(facts.KubeProxyPods, facts.ServerVersion)
	}
	res, err := debugpod.CollectAll(ctx, cfg.Client, cfg.RESTConfig, nodes, opts, cfg.Parallel, cfg.Progress)
	if err != nil {
		return failAll(nodes, err)
	}
	return res
}

// scriptOptions are the dump script's: observing or not, and the cap on
// each connection table.
func (cfg Config) scriptOptions() nodedump.ScriptOptions {
	return nodedump.ScriptOptions{Observe: cfg.Observe, Conntrack: nodedump.ConntrackOptions{MaxBytes: cfg.ConntrackMaxBytes}}
}
