//! A small maximum-flow solver, used where greedy choices are not enough: completing a placement the
//! greedy pass left with holes (tight capacities), and choosing which valid replicas a sticky
//! rebalance keeps when rack and capacity limits overlap. Both networks have the same shape:
//! source -> partition -> (partition, rack) -> broker -> sink, with capacities `rf` (or the open
//! slots), rule 2's `m`, 1 and the broker's room. A flow is a valid (partial) placement and a maximum
//! flow places as much as possible, so these steps are exact, not heuristics.

use std::collections::VecDeque;

use super::build::Build;
use super::engine::Ctx;

/// Residual network; edge `e` and its reverse `e ^ 1` are stored side by side.
pub(super) struct Net {
    to: Vec<usize>,
    residual: Vec<usize>,
    adj: Vec<Vec<usize>>,
}

impl Net {
    pub(super) fn new(nodes: usize) -> Self {
        Self { to: Vec::new(), residual: Vec::new(), adj: vec![Vec::new(); nodes] }
    }

    /// Adds an edge and returns its id.
    pub(super) fn edge(&mut self, from: usize, to: usize, cap: usize) -> usize {
        let e = self.to.len();
        self.to.extend([to, from]);
        self.residual.extend([cap, 0]);
        self.adj[from].push(e);
        self.adj[to].push(e + 1);
        e
    }

    /// Sends `amount` along edge `e` (used to load an initial flow).
    pub(super) fn push(&mut self, e: usize, amount: usize) {
        self.residual[e] = self.residual[e].saturating_sub(amount);
        self.residual[e ^ 1] += amount;
    }

    pub(super) fn room(&self, e: usize) -> usize {
        self.residual[e]
    }

    pub(super) fn flow(&self, e: usize) -> usize {
        self.residual[e ^ 1]
    }

    /// Augments along shortest paths until the flow is maximum (Edmonds–Karp from the loaded flow).
    pub(super) fn maximize(&mut self, source: usize, sink: usize) {
        while self.augment(source, sink) {}
    }

    fn augment(&mut self, source: usize, sink: usize) -> bool {
        let mut via: Vec<Option<usize>> = vec![None; self.adj.len()];
        let mut seen = vec![false; self.adj.len()];
        seen[source] = true;
        let mut queue = VecDeque::from([source]);
        while let Some(u) = queue.pop_front() {
            if u == sink {
                break;
            }
            for &e in &self.adj[u] {
                let v = self.to[e];
                if !seen[v] && self.residual[e] > 0 {
                    seen[v] = true;
                    via[v] = Some(e);
                    queue.push_back(v);
                }
            }
        }
        if !seen[sink] || source == sink {
            return false;
        }
        let mut path = Vec::new();
        let mut v = sink;
        while v != source {
            let Some(e) = via[v] else { return false };
            path.push(e);
            v = self.to[e ^ 1];
        }
        let amount = path.iter().map(|&e| self.residual[e]).min().unwrap_or(0);
        for e in path {
            self.push(e, amount);
        }
        amount > 0
    }
}

/// Node numbering shared by both networks.
pub(super) struct Layout {
    parts: usize,
    groups: usize,
}

impl Layout {
    pub(super) const SOURCE: usize = 0;
    pub(super) const SINK: usize = 1;

    pub(super) fn new(ctx: &Ctx) -> Self {
        Self { parts: ctx.partitions, groups: ctx.groups.len() }
    }
    pub(super) fn size(&self, nodes: usize) -> usize {
        2 + self.parts + self.parts * self.groups + nodes
    }
    pub(super) fn part(p: usize) -> usize {
        2 + p
    }
    pub(super) fn group(&self, p: usize, r: usize) -> usize {
        2 + self.parts + p * self.groups + r
    }
    pub(super) fn node(&self, b: usize) -> usize {
        2 + self.parts + self.parts * self.groups + b
    }
}

/// Fills as many holes of `build` as possible, rerouting unfixed replicas where needed, and returns
/// the number of holes left (0 unless no valid completion exists). Unfixed replicas that need not move
/// stay in their slots.
pub(super) fn repair(build: &mut Build<'_>) -> usize {
    if build.holes() == 0 {
        return 0;
    }
    let ctx = build.ctx;
    let nodes = &ctx.nodes;
    let layout = Layout::new(ctx);
    let mut net = Net::new(layout.size(nodes.len()));
    let mut fixed_on = vec![0usize; nodes.len()];
    let mut choices = Vec::new();
    for (p, (slots, fixed)) in build.slots.iter().zip(&build.fixed).enumerate() {
        let kept: Vec<usize> = slots.iter().zip(fixed).filter(|(_, f)| **f).filter_map(|(s, _)| *s).collect();
        let placed: Vec<usize> = slots.iter().zip(fixed).filter(|(_, f)| !**f).filter_map(|(s, _)| *s).collect();
        for &b in &kept {
            fixed_on[b] += 1;
        }
        let open = fixed.iter().filter(|f| !**f).count();
        if open == 0 {
            continue;
        }
        let e = net.edge(Layout::SOURCE, Layout::part(p), open);
        net.push(e, placed.len());
        for (r, members) in ctx.groups.iter().enumerate() {
            let in_rack = |list: &[usize]| list.iter().filter(|&&b| nodes[b].rack == r).count();
            let room = ctx.max_per_rack.saturating_sub(in_rack(&kept));
            if room == 0 || members.is_empty() {
                continue;
            }
            let e = net.edge(Layout::part(p), layout.group(p, r), room);
            net.push(e, in_rack(&placed));
            for &b in members.iter().filter(|b| !kept.contains(b)) {
                let e = net.edge(layout.group(p, r), layout.node(b), 1);
                if placed.contains(&b) {
                    net.push(e, 1);
                }
                choices.push((p, b, e));
            }
        }
    }
    for (b, node) in nodes.iter().enumerate() {
        let e = net.edge(layout.node(b), Layout::SINK, node.cap.saturating_sub(fixed_on[b]));
        net.push(e, build.count[b].saturating_sub(fixed_on[b]));
    }
    net.maximize(Layout::SOURCE, Layout::SINK);

    let mut chosen: Vec<Vec<usize>> = vec![Vec::new(); ctx.partitions];
    for (p, b, e) in choices {
        if net.flow(e) > 0 {
            chosen[p].push(b);
        }
    }
    for (p, new) in chosen.iter().enumerate() {
        for i in 0..ctx.rf {
            if let Some(b) = build.slots[p][i].filter(|b| !build.fixed[p][i] && !new.contains(b)) {
                build.slots[p][i] = None;
                build.count[b] = build.count[b].saturating_sub(1);
            }
        }
        for &b in new {
            if build.slots[p].contains(&Some(b)) {
                continue;
            }
            if let Some(slot) = build.slots[p].iter_mut().find(|s| s.is_none()) {
                *slot = Some(b);
                build.count[b] += 1;
            }
        }
    }
    build.holes()
}
