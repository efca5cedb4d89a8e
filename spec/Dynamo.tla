------------------------------- MODULE Dynamo -------------------------------
(***************************************************************************)
(* Amazon's Dynamo (DeCandia et al., SOSP 2007): a replicated key-value    *)
(* store with N/R/W (and PR/PW) quorums, versions as vector clocks, dotted *)
(* version vectors or last-writer-wins, sibling versions, deletes as      *)
(* tombstones that are reaped, read repair, sloppy quorum with hinted     *)
(* handoff, forwarding by a node that is not a replica, and anti-entropy. *)
(*                                                                         *)
(* A node's actions are named after the handlers of dynamo_ref.core.node  *)
(* that implement them: one per client request, per timer and per message *)
(* kind, the last chosen by Receive(i).  Faults are named after the       *)
(* simulator's fault injections.  Variables are plain functions and       *)
(* records over nodes, keys, values and naturals, so that a               *)
(* trace-validation spec can read the node's traces.                      *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets, Sequences, Bags, TLC

\* The nodes, the keys and the values clients write.
CONSTANTS Nodes, Keys, Values

\* Replication factor, read and write quorums, and how many of the reads and
\* acks must come from the key's own replicas (primaries), not fallbacks.
CONSTANTS N, R, W, PR, PW

\* Pref[k]: every node, in ring order from k's position (the extended
\* preference list).  The first N are k's replicas, the rest its fallbacks.
\* Pref2: the same after a membership change (a node joins or leaves), which
\* each node learns on its own (gossip); Pref2 = Pref for a fixed ring.
CONSTANTS Pref, Pref2

\* Sloppy: unreachable replicas are replaced by fallbacks carrying a hint.
\* Mode: how versions are made and compared, the node's --mode:
\*   "VClock" the paper's vector clocks, "DVV" dotted version vectors (the
\*   node's default), "LWW" last-writer-wins on the vector clocks' timestamps.
CONSTANTS Sloppy, Mode

\* Deletes: clients may delete (write the tombstone Tomb), and a tombstone
\* every replica holds is reaped.
CONSTANTS Deletes, Tomb

\* PruneAt: the most entries a written clock keeps (the node's prune
\* setting `big`), 0 for no pruning.  Which entries go is left open (the node
\* drops the oldest by their timestamps, which the spec does not keep), but
\* never the writer's own.
CONSTANT PruneAt

\* A value that is not a node: the hint of a version stored for its owner,
\* and the writer of a version without a dot.
CONSTANT NoNode

\* Bounds that keep the state space finite: client puts (they also bound
\* timestamps and vector-clock counters), client gets, messages in flight,
\* requests forwarded by a node that is not a replica, and each kind of fault.
CONSTANTS MaxClock, MaxGets, MaxMsgs, MaxForwards,
          MaxCrashes, MaxPartitions, MaxLosses, MaxDups

ASSUME /\ N \in 1..Cardinality(Nodes)
       /\ R \in 1..N
       /\ W \in 1..N
       /\ PR \in 0..R
       /\ PW \in 0..W
       /\ Sloppy \in BOOLEAN
       /\ Mode \in {"VClock", "DVV", "LWW"}
       /\ Deletes \in BOOLEAN
       /\ PruneAt \in Nat
       /\ Tomb \notin Values
       /\ NoNode \notin Nodes
       /\ \A k \in Keys : /\ Len(Pref[k]) = Cardinality(Nodes)
                          /\ {Pref[k][i] : i \in 1..Len(Pref[k])} = Nodes
                          /\ Len(Pref2[k]) = Cardinality(Nodes)
                          /\ {Pref2[k][i] : i \in 1..Len(Pref2[k])} = Nodes
       /\ \A b \in {MaxClock, MaxGets, MaxMsgs, MaxForwards, MaxCrashes,
                    MaxPartitions, MaxLosses, MaxDups} : b \in Nat
       /\ Cardinality(Nodes) < 10

LWW == Mode = "LWW"
DVV == Mode = "DVV"

----------------------------------------------------------------------------
\* Durable per-node state: kept across a crash.

\* store[n][k]: the sibling set node n holds for key k, each a version
\* [val, vc, ts, wr, dot]: its value (Tomb for a delete), its vector clock,
\* its timestamp, and in DVV mode its dot: the event <<wr, dot>> of its
\* writer.  In DVV mode vc is only the context it was written in; without a
\* dot (VClock, LWW) wr is NoNode, dot 0 and vc holds the writer's counter.
VARIABLE store

\* hints[n]: versions n holds for a replica it stood in for, as records
\* [key, owner, ver].  Kept apart from store until handed off.
VARIABLE hints

\* Volatile per-node state: lost in a crash.

\* putOps[n]: the puts n coordinates that are not yet finished, each
\* [id, key, ver, acks, hinted, extra]: the nodes that acked, the replicas
\* replaced by a fallback, and the fallbacks used.
VARIABLE putOps

\* reaps[n]: the tombstones n knows every replica holds, [key, vers], to be
\* reaped when the node's reap timer fires.
VARIABLE reaps

\* moved[n]: the transfers of keys n no longer replicates that their new
\* replicas acked, [key, target, vers]: what was sent.
VARIABLE moved

\* Durable: view[n] is the ring node n routes by, 1 (Pref) or 2 (Pref2).
VARIABLE view

\* getOps[n]: the gets n coordinates, each [id, key, resps, after, done]:
\* resps maps each responder to its versions, after counts the writes acked
\* before the get began, done says whether the client has its answer.
VARIABLE getOps

\* The environment.

\* up[n]: whether node n is running.
VARIABLE up

\* msgs: the messages in flight, a bag (message -> copies).
VARIABLE msgs

\* cut: the links a partition has cut, each a set of two nodes.
VARIABLE cut

\* clock: the last timestamp handed out.  Every put takes the next one, so it
\* also names the put and orders writes in LWW mode.
VARIABLE clock

\* gets: how many client gets have begun; the next get's id is gets + 1.
VARIABLE gets

\* faults: how many faults of each kind have happened so far.
VARIABLE faults

\* fwds: requests a node that is not a replica of their key has forwarded to
\* one that is, [type, src, dst, key, val, vers, seen]: a put's value, the
\* versions its client read (its context; nothing for a get), and (history)
\* what its client had seen.
VARIABLE fwds

\* History, for the properties only.

\* acked: the writes acknowledged to clients, [key, ver, seq, epoch]: seq
\* orders the acks, epoch is the number of crashes and partitions before.
VARIABLE acked

\* answered: the reads answered to clients, [key, vers, after, epoch].
VARIABLE answered

\* saw[t]: the puts that put t's writer had seen, through the read whose
\* context it wrote with, and what those had seen in turn: its causal past,
\* as the clients know it, whatever the clocks say.
VARIABLE saw

\* stored[t]: the nodes that stored put t's version on its way to the client:
\* its coordinator and every node that took a store message of the put, as a
\* replica or as hints.  An ack can only come from one of them.
VARIABLE stored

\* buried[k]: the tombstones of k reaped so far.  A reap removes versions on
\* purpose; the properties count what a buried tombstone superseded as
\* deleted, not lost.
VARIABLE buried

nodeVars == <<store, hints, putOps, getOps>>
envVars == <<up, msgs, cut, clock, gets, faults>>
historyVars == <<acked, answered, saw, stored>>
\* Kept apart from the groups above, which the trace specs name.
extraVars == <<reaps, fwds, buried, moved, view>>
vars == <<nodeVars, envVars, historyVars, extraVars>>

----------------------------------------------------------------------------
\* Helpers.

Max(S) == CHOOSE x \in S : \A y \in S : y <= x
Min(S) == CHOOSE x \in S : \A y \in S : x <= y

Replicas(k) == {Pref[k][i] : i \in 1..N}

\* The ring node n routes by, and k's replicas and fallbacks on it.
PrefOf(n) == IF view[n] = 1 THEN Pref ELSE Pref2

ReplicasOf(n, k) == {PrefOf(n)[k][i] : i \in 1..N}

FallbacksOf(n, k) == {PrefOf(n)[k][i] : i \in (N + 1)..Cardinality(Nodes)}

ZeroClock == [n \in Nodes |-> 0]

\* Vector clocks: a happened before or equals b.
Leq(a, b) == \A n \in Nodes : a[n] <= b[n]

\* The least clock above every clock of a set of versions.
JoinAll(S) == [n \in Nodes |-> Max({v.vc[n] : v \in S} \cup {0})]

\* Version u causally follows version v by their vector clocks.
Descends(u, v) == Leq(v.vc, u.vc) /\ u.vc # v.vc

\* DVV (dynamo_ref.core.node_versions.dvv_covers): v's event is in u's
\* history.  Two versions with one event (a counter reused after a reap)
\* claim nothing of each other.
Covers(u, v) ==
    /\ u # v
    /\ ~(u.wr = v.wr /\ u.dot = v.dot)
    /\ u.vc[v.wr] >= v.dot

\* u causally follows v: the relation the promises are stated in.
After(u, v) == IF DVV THEN Covers(u, v) ELSE Descends(u, v)

\* Version u makes v obsolete on a replica: by causality, or by a later
\* timestamp in LWW mode (the timestamps are unique, so no tie break is
\* needed here; the node breaks ties by node id).
Supersedes(u, v) == IF LWW THEN u.ts > v.ts ELSE After(u, v)

\* What a replica keeps of a set of versions.
Reconcile(S) == {v \in S : ~\E u \in S : Supersedes(u, v)}

\* A version's clock with its dot folded in: every event it has seen.
History(v) == IF v.dot = 0 THEN v.vc
              ELSE [v.vc EXCEPT ![v.wr] = Max({@, v.dot})]

HistoryAll(S) == [n \in Nodes |-> Max({History(v)[n] : v \in S} \cup {0})]

\* The context a client reads with versions S (node_versions.read_context).
\* DVV: the merged clocks, extended by each node's dots that follow them
\* without a gap; a dot beyond a gap is left out, so that a write with this
\* context keeps that sibling instead of claiming the writes in the gap.
DotsOf(S, w) == {u.dot : u \in {u \in S : u.wr = w /\ u.dot > 0}}

Context(S) ==
    IF DVV
    THEN LET base == JoinAll(S)
         IN [w \in Nodes |->
               Max({m \in base[w]..(base[w] + Cardinality(DotsOf(S, w))) :
                      \A j \in (base[w] + 1)..m : j \in DotsOf(S, w)})]
    ELSE JoinAll(S)

\* The coordinator rule (node_versions.next_counter): one above the context
\* and every clock entry and dot c holds for the key.
NextCounter(c, ctx, S) ==
    Max({ctx[c]} \cup {u.vc[c] : u \in S} \cup
        {u.dot : u \in {u \in S : u.wr = c}}) + 1

\* The version coordinator c writes with value v and context ctx over the
\* versions S it holds, at timestamp ts (node_versions.write_version).
NewVersion(c, v, ctx, S, ts) ==
    LET n == NextCounter(c, ctx, S)
    IN IF DVV THEN [val |-> v, vc |-> ctx, ts |-> ts, wr |-> c, dot |-> n]
       ELSE [val |-> v, vc |-> [ctx EXCEPT ![c] = n], ts |-> ts,
             wr |-> NoNode, dot |-> 0]

\* The contexts coordinator c may write with, pruned from ctx.
Pruned(ctx, c) ==
    LET entries == {n \in Nodes : ctx[n] > 0}
    IN IF PruneAt = 0 \/ Cardinality(entries) <= PruneAt
       THEN {ctx}
       ELSE {[n \in Nodes |-> IF n \in D THEN 0 ELSE ctx[n]] :
               D \in {D \in SUBSET (entries \ {c}) :
                        Cardinality(entries \ D) = PruneAt}}

\* The values a client writes: a delete writes the tombstone.
WriteValues == Values \cup (IF Deletes THEN {Tomb} ELSE {})

IsTomb(v) == v.val = Tomb

\* What a client may have read of k before it writes: nothing, or a read it
\* was answered.  A put with its context overwrites that read.
Reads(k) == {[vers |-> {}]} \cup {rd \in answered : rd.key = k}

Linked(i, j) == {i, j} \notin cut

\* Node i can take message m of the given kind off the network: m is for i,
\* i is running and the link from the sender is not cut.
Delivers(i, m, type) ==
    /\ m.mtype = type
    /\ m.mdest = i
    /\ up[i]
    /\ Linked(m.msrc, i)

\* Crashes and partitions so far: a read is promised a write acked before
\* it only with none of them between.  With a ring change in the model, the
\* last digit counts the nodes that learnt the new ring: no read is promised
\* a write acked while the nodes disagreed on the ring, nor across the change.
Epoch ==
    IF Pref2 = Pref THEN faults.crash + faults.partition
    ELSE 10 * (faults.crash + faults.partition) + Cardinality({n \in Nodes : view[n] = 2})

\* The nodes agreed on the ring in epoch e.
Settled(e) == Pref2 = Pref \/ e % 10 \in {0, Cardinality(Nodes)}

InFlight == BagCardinality(msgs)

\* The ids of puts (their timestamps) and of gets.
PutIds == 1..MaxClock
GetIds == 1..MaxGets

\* Every message has the same fields: mop is the id of the put or get it
\* serves (0 for none), mhint the owner of a hinted version (NoNode if none).
Msg(type, src, dst, k, vs, op, hint) ==
    [mtype |-> type, msrc |-> src, mdest |-> dst, mkey |-> k,
     mvers |-> vs, mop |-> op, mhint |-> hint]

Send(m) == msgs' = msgs (+) SetToBag({m})

SendAll(S) == msgs' = msgs (+) SetToBag(S)

Discard(m) == msgs' = msgs (-) SetToBag({m})

Reply(resp, req) == msgs' = (msgs (-) SetToBag({req})) (+) SetToBag({resp})

\* A get has its quorum: R responses, PR of them from the key's replicas.
GetQuorum(c, op) ==
    /\ Cardinality(DOMAIN op.resps) >= R
    /\ Cardinality(DOMAIN op.resps \cap ReplicasOf(c, op.key)) >= PR

\* A put has its quorum: W acks, PW of them from the key's replicas.
PutQuorum(c, op) ==
    /\ Cardinality(op.acks) >= W
    /\ Cardinality(op.acks \cap ReplicasOf(c, op.key)) >= PW

\* Record get op new at c in place of the set old, and answer the client
\* once it has its quorum.
UpdateGet(c, old, new) ==
    IF ~new.done /\ GetQuorum(c, new)
    THEN /\ getOps' = [getOps EXCEPT ![c] = (@ \ old) \cup
                                           {[new EXCEPT !.done = TRUE]}]
         /\ answered' = answered \cup
              {[key |-> new.key,
                vers |-> Reconcile(UNION {new.resps[n] : n \in DOMAIN new.resps}),
                after |-> new.after,
                epoch |-> Epoch]}
    ELSE /\ getOps' = [getOps EXCEPT ![c] = (@ \ old) \cup {new}]
         /\ UNCHANGED answered

\* Record put op new at c in place of the set old.  Once it has its quorum
\* the client gets its ack, and c forgets the put; but a delete stays until
\* every replica has acked its tombstone, and then c schedules its reap.
UpdatePut(c, old, new) ==
    LET answered0 == \E o \in old : PutQuorum(c, o)
        reaping == Deletes /\ IsTomb(new.ver)
        all == ReplicasOf(c, new.key) \subseteq new.acks
    IN /\ IF PutQuorum(c, new) /\ ~answered0
          THEN acked' = acked \cup {[key |-> new.key, ver |-> new.ver,
                                     seq |-> Cardinality(acked) + 1,
                                     epoch |-> Epoch]}
          ELSE UNCHANGED acked
       /\ IF PutQuorum(c, new) /\ (~reaping \/ all)
          THEN putOps' = [putOps EXCEPT ![c] = @ \ old]
          ELSE putOps' = [putOps EXCEPT ![c] = (@ \ old) \cup {new}]
       /\ IF PutQuorum(c, new) /\ reaping /\ all
          THEN reaps' = [reaps EXCEPT ![c] = @ \cup
                           {[key |-> new.key, vers |-> {new.ver}]}]
          ELSE UNCHANGED reaps

----------------------------------------------------------------------------
\* Client requests and their coordination.

\* What a client that read versions vers has seen: those and their pasts.
Seen(vers) == UNION {saw[u.ts] \cup {u.ts} : u \in vers}

\* Replica c coordinates a put of value v for key k, whose client read the
\* versions vers before (its context; none for a blind write) and so has
\* seen the puts seen (the history saw keeps for the new put).  c takes its
\* counter past both the context and every clock it holds for k, so the
\* counter names this write alone; it stores the version, which counts as
\* the first ack, and sends it to the other replicas.
Coordinate(c, k, v, vers, seen) ==
    /\ up[c]
    /\ c \in ReplicasOf(c, k)
    /\ clock < MaxClock
    /\ InFlight + N - 1 <= MaxMsgs
    /\ \E ctx \in Pruned(Context(vers), c) :
       LET ver == NewVersion(c, v, ctx, store[c][k], clock + 1)
       IN /\ clock' = clock + 1
          /\ store' = [store EXCEPT ![c][k] = Reconcile(@ \cup {ver})]
          /\ UpdatePut(c, {}, [id |-> clock + 1, key |-> k, ver |-> ver,
                               acks |-> {c}, hinted |-> {}, extra |-> {}])
          /\ SendAll({Msg("store", c, j, k, {ver}, clock + 1, NoNode) :
                        j \in ReplicasOf(c, k) \ {c}})
          /\ saw' = [saw EXCEPT ![clock + 1] = seen]
          /\ stored' = [stored EXCEPT ![clock + 1] = {c}]
    /\ UNCHANGED <<hints, getOps, up, cut, gets, faults, answered, buried, moved, view>>

\* A client puts value v (Tomb: deletes) for key k at replica c, with the
\* context of an earlier read or none.
ClientPut(c, k, v) ==
    /\ \E rd \in Reads(k) : Coordinate(c, k, v, rd.vers, Seen(rd.vers))
    /\ UNCHANGED fwds

\* A client's request reaches node c, which is not a replica of its key: c
\* forwards it to a replica, which coordinates it (coordinator.py _forward).
\* The answer travels back the same way; a lost answer only tells the client
\* less, so the spec records the outcome where the replica decides it.
Forward(c, k, type, v, vers) ==
    /\ up[c]
    /\ c \notin ReplicasOf(c, k)
    /\ Cardinality(fwds) < MaxForwards
    /\ \E j \in ReplicasOf(c, k) :
          fwds' = fwds \cup {[type |-> type, src |-> c, dst |-> j, key |-> k,
                              val |-> v, vers |-> vers, seen |-> Seen(vers)]}
    /\ UNCHANGED <<nodeVars, envVars, historyVars, reaps, buried, moved, view>>

ClientForward(c, k, v) == \E rd \in Reads(k) : Forward(c, k, "put", v, rd.vers)

ClientForwardGet(c, k) == Forward(c, k, "get", Tomb, {})

\* Replica j takes a forwarded put and coordinates it.
ForwardedPut(j) ==
    \E f \in fwds :
        /\ f.type = "put"
        /\ f.dst = j
        /\ Linked(f.src, j)
        /\ Coordinate(j, f.key, f.val, f.vers, f.seen)
        /\ fwds' = fwds \ {f}

\* Replica i stores the versions of a store message, or keeps them as hints
\* when it stands in for replica m.mhint.  One handler serves puts (acked to
\* put m.mop), read repair (mop = 0, not acked) and hinted handoff (mhint is
\* i itself, acked so that the sender can drop its hints).  Only a handoff's
\* ack echoes the versions: no other ack drops anything.
ReplicaStore(i, m) ==
    /\ Delivers(i, m, "store")
    /\ IF m.mhint \in {NoNode, i}
       THEN /\ store' = [store EXCEPT ![i][m.mkey] = Reconcile(@ \cup m.mvers)]
            /\ UNCHANGED hints
       ELSE /\ hints' = [hints EXCEPT ![i] = @ \cup
                           {[key |-> m.mkey, owner |-> m.mhint, ver |-> v] :
                              v \in m.mvers}]
            /\ UNCHANGED store
    /\ IF m.mop # 0 \/ m.mhint = i
       THEN Reply(Msg("storeAck", i, m.msrc, m.mkey,
                      IF m.mhint = i THEN m.mvers ELSE {}, m.mop, m.mhint), m)
       ELSE Discard(m)
    /\ stored' = IF m.mop # 0 THEN [stored EXCEPT ![m.mop] = @ \cup {i}] ELSE stored
    /\ UNCHANGED <<putOps, getOps, up, cut, clock, gets, faults, acked, answered, saw, extraVars>>

\* Node i learns that m.msrc stored the versions of store m.mop.  It is an
\* ack for put m.mop, answered to the client once W nodes hold the write; and
\* when it acks a handoff (m.msrc stored m.mvers as their replica), i drops
\* its hints for m.msrc of them.
StoreAck(i, m) ==
    /\ Delivers(i, m, "storeAck")
    /\ LET ops == {op \in putOps[i] : op.id = m.mop}
       IN IF ops = {}
          THEN UNCHANGED <<putOps, acked, reaps>>
          ELSE LET op == CHOOSE x \in ops : TRUE
               IN UpdatePut(i, {op}, [op EXCEPT !.acks = @ \cup {m.msrc}])
    /\ hints' = IF m.mhint = m.msrc
                THEN [hints EXCEPT ![i] =
                        {h \in @ : ~(/\ h.owner = m.msrc
                                     /\ h.key = m.mkey
                                     /\ h.ver \in m.mvers)}]
                ELSE hints
    /\ Discard(m)
    /\ UNCHANGED <<store, getOps, up, cut, clock, gets, faults, answered, saw, stored,
                   fwds, buried, moved, view>>

\* The timer of put id fires at c.  Before its quorum the client is told the
\* put failed, though the replicas that stored it keep it; an answered delete
\* still waiting for every replica's ack gives up its reap.
PutTimeout(c, id) ==
    /\ up[c]
    /\ \E op \in putOps[c] :
          /\ op.id = id
          /\ putOps' = [putOps EXCEPT ![c] = @ \ {op}]
    /\ UNCHANGED <<store, hints, getOps, envVars, historyVars, extraVars>>

\* Sloppy quorum: c holds replica h of put id down, so it sends the version to
\* a fallback not yet used, with h as its hint.  A node's failure detector can
\* be wrong either way: right after a heal or a recovery it may still suspect
\* a peer, right after a cut it may still trust one, and a slow replica looks
\* like a dead one.  So c may hold down any replica that has not acked, and
\* take any unused fallback (the node takes the first it does not suspect).
SloppyFallback(c, id, h) ==
    /\ Sloppy
    /\ up[c]
    /\ InFlight < MaxMsgs
    /\ \E op \in putOps[c] :
       LET k == op.key
       IN /\ op.id = id
          /\ h \in ReplicasOf(c, k) \ (op.acks \cup op.hinted)
          /\ \E f \in FallbacksOf(c, k) :
                /\ f \notin op.extra
                /\ putOps' = [putOps EXCEPT ![c] = (@ \ {op}) \cup
                                 {[op EXCEPT !.hinted = @ \cup {h},
                                             !.extra = @ \cup {f}]}]
                /\ Send(Msg("store", c, f, k, {op.ver}, id, h))
    /\ UNCHANGED <<store, hints, getOps, up, cut, clock, gets, faults,
                   historyVars, extraVars>>


NoStandIns == [f \in {} |-> NoNode]

\* Under a sloppy quorum, a get coordinated by c may read fallbacks in place of
\* replicas it holds down: a function from each fallback read to the replica
\* it stands in for, one fallback a replica.
StandIns(c, k) ==
    IF Sloppy
    THEN {s \in UNION {[F -> ReplicasOf(c, k) \ {c}] : F \in SUBSET FallbacksOf(c, k)} :
            \A f, g \in DOMAIN s : f # g => s[f] # s[g]}
    ELSE {NoStandIns}

\* The nodes get op of coordinator c reads besides c.
ReadTargets(c, op) ==
    (ReplicasOf(c, op.key) \ {op.stand[f] : f \in DOMAIN op.stand}) \cup DOMAIN op.stand

\* The owner a node stands in for in get op, or NoNode for a replica.
StandsFor(op, n) == IF n \in DOMAIN op.stand THEN op.stand[n] ELSE NoNode

\* A client gets key k at replica c, which reads its own store and asks the
\* other replicas, or fallbacks in place of those it holds down (their read
\* names the replica, so that they answer with their hints for it too).
CoordinateGet(c, k) ==
    /\ up[c]
    /\ c \in ReplicasOf(c, k)
    /\ gets < MaxGets
    /\ InFlight + N - 1 <= MaxMsgs
    /\ gets' = gets + 1
    /\ \E stand \in StandIns(c, k) :
       LET op == [id |-> gets + 1, key |-> k, resps |-> (c :> store[c][k]),
                  stand |-> stand, after |-> Cardinality(acked), done |-> FALSE]
       IN /\ UpdateGet(c, {}, op)
          /\ SendAll({Msg("read", c, j, k, {}, gets + 1, StandsFor(op, j)) :
                        j \in ReadTargets(c, op) \ {c}})
    /\ UNCHANGED <<store, hints, putOps, up, cut, clock, faults, acked, saw, stored,
                   reaps, buried, moved, view>>

ClientGet(c, k) == CoordinateGet(c, k) /\ UNCHANGED fwds

\* Replica j takes a forwarded get and coordinates it.
ForwardedGet(j) ==
    \E f \in fwds :
        /\ f.type = "get"
        /\ f.dst = j
        /\ Linked(f.src, j)
        /\ CoordinateGet(j, f.key)
        /\ fwds' = fwds \ {f}

\* Node i answers a read with its versions of the key; a fallback standing in
\* for replica m.mhint adds the versions it holds for it.
ReplicaRead(i, m) ==
    /\ Delivers(i, m, "read")
    /\ LET k == m.mkey
           held == IF m.mhint \in {NoNode, i}
                   THEN store[i][k]
                   ELSE Reconcile(store[i][k] \cup
                          {x.ver : x \in {x \in hints[i] : x.owner = m.mhint /\ x.key = k}})
       IN Reply(Msg("readResp", i, m.msrc, k, held, m.mop, NoNode), m)
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, faults, historyVars, extraVars>>

\* Coordinator i records a replica's read response; with R of them it
\* reconciles them to the maximal versions and answers the client.  Later
\* responses are kept for read repair.
ReadResponse(i, m) ==
    /\ Delivers(i, m, "readResp")
    /\ LET ops == {op \in getOps[i] : op.id = m.mop}
       IN IF ops = {}
          THEN UNCHANGED <<getOps, answered>>
          ELSE LET op == CHOOSE x \in ops : TRUE
               IN IF m.msrc \in DOMAIN op.resps
                  THEN UNCHANGED <<getOps, answered>>
                  ELSE UpdateGet(i, {op},
                         [op EXCEPT !.resps = @ @@ (m.msrc :> m.mvers)])
    /\ Discard(m)
    /\ UNCHANGED <<store, hints, putOps, up, cut, clock, gets, faults, acked, saw,
                   stored, extraVars>>

\* After answering get id, coordinator c sends the reconciled versions to
\* every responder that returned something else (to a fallback as hints for
\* the replica it stood in for), and forgets the get.  When every replica
\* answered itself with the same tombstones, c schedules their reap.
ReadRepair(c, id) ==
    /\ up[c]
    /\ \E op \in getOps[c] :
       LET k == op.key
           latest == Reconcile(UNION {op.resps[n] : n \in DOMAIN op.resps})
           stale == {n \in DOMAIN op.resps : op.resps[n] # latest}
       IN /\ op.id = id
          /\ op.done
          /\ InFlight + Cardinality(stale \ {c}) <= MaxMsgs
          /\ store' = IF c \in stale
                      THEN [store EXCEPT ![c][k] = Reconcile(@ \cup latest)]
                      ELSE store
          /\ SendAll({Msg("store", c, j, k, latest, 0, StandsFor(op, j)) :
                        j \in stale \ {c}})
          /\ getOps' = [getOps EXCEPT ![c] = @ \ {op}]
          /\ reaps' = IF /\ Deletes
                         /\ latest # {}
                         /\ \A u \in latest : IsTomb(u)
                         /\ stale = {}
                         /\ DOMAIN op.stand = {}
                         /\ ReplicasOf(c, k) \subseteq DOMAIN op.resps
                      THEN [reaps EXCEPT ![c] = @ \cup {[key |-> k, vers |-> latest]}]
                      ELSE reaps
    /\ UNCHANGED <<hints, putOps, up, cut, clock, gets, faults, historyVars, fwds, buried,
                   moved, view>>

----------------------------------------------------------------------------
\* Background repair.

\* Node f hands the versions it holds for replica h of key k back to h, in a
\* store message hinted for h itself; the hints go when h acks.  f tries when
\* its detector trusts h, which may be wrong: a copy sent to a node that is
\* down or cut off waits or is lost like any message, and f tries again, also
\* while an earlier copy is still in flight.
HandoffHint(f, h, k) ==
    /\ up[f]
    /\ f # h
    /\ LET vs == {x.ver : x \in {x \in hints[f] : x.owner = h /\ x.key = k}}
       IN /\ vs # {}
          /\ InFlight < MaxMsgs
          /\ Send(Msg("store", f, h, k, vs, 0, h))
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, faults, historyVars, extraVars>>

\* Replicas i and j of key k compare their versions (by Merkle trees in the
\* node) and both keep the reconciliation of the two sets.
AntiEntropy(i, j, k) ==
    /\ {i, j} \subseteq ReplicasOf(i, k)
    /\ i # j
    /\ up[i] /\ up[j]
    /\ Linked(i, j)
    /\ store[i][k] # store[j][k]
    /\ LET merged == Reconcile(store[i][k] \cup store[j][k])
       IN store' = [store EXCEPT ![i][k] = merged, ![j][k] = merged]
    /\ UNCHANGED <<hints, putOps, getOps, envVars, historyVars, extraVars>>

\* Node i drops key k if it holds exactly the tombstones T.
ReapLocal(i, k, T) ==
    IF store[i][k] = T
    THEN /\ store' = [store EXCEPT ![i][k] = {}]
         /\ buried' = [buried EXCEPT ![k] = @ \cup T]
    ELSE UNCHANGED <<store, buried>>

\* The node's reap delay is meant to outlast every message and request of
\* the key that is older than the tombstones (a get that read a version
\* before the delete would write it back by read repair): the spec states
\* that timing assumption as the guard of the reap, no message in flight and
\* no request in progress holding a version they supersede.  Hints are not
\* covered: the node does not wait for them.
ReapQuiet(k, T) ==
    LET old(S) == \E v \in S : \E t \in T : Supersedes(t, v)
    IN /\ \A m \in DOMAIN msgs : m.mkey = k => ~old(m.mvers)
       /\ \A n \in Nodes :
             /\ \A op \in putOps[n] : op.key = k => ~old({op.ver})
             /\ \A op \in getOps[n] :
                   op.key = k => ~old(UNION {op.resps[x] : x \in DOMAIN op.resps})

\* The reap timer of tombstones T of key k fires at c: c tells the other
\* replicas to drop the key, and drops it itself, each only if the
\* tombstones are still all it holds (replica.py reap_timer).
ReapTombstone(c, k) ==
    /\ up[c]
    /\ \E r \in reaps[c] :
          /\ r.key = k
          /\ ReapQuiet(k, r.vers)
          /\ InFlight + N - 1 <= MaxMsgs
          /\ reaps' = [reaps EXCEPT ![c] = @ \ {r}]
          /\ SendAll({Msg("reap", c, j, k, r.vers, 0, NoNode) :
                        j \in ReplicasOf(c, k) \ {c}})
          /\ IF c \in ReplicasOf(c, k) THEN ReapLocal(c, k, r.vers)
             ELSE UNCHANGED <<store, buried>>
    /\ UNCHANGED <<hints, putOps, getOps, up, cut, clock, gets, faults,
                   historyVars, fwds, moved, view>>

\* Replica i takes a reap message.
ReplicaReap(i, m) ==
    /\ Delivers(i, m, "reap")
    /\ ReapLocal(i, m.mkey, m.mvers)
    /\ Discard(m)
    /\ UNCHANGED <<hints, putOps, getOps, up, cut, clock, gets, faults,
                   historyVars, reaps, fwds, moved, view>>

----------------------------------------------------------------------------
\* Membership: a node joins or leaves, and each node learns the new ring on
\* its own.  A node that no longer replicates a key hands its versions to
\* the key's new replicas and drops them only once each acked all it holds.

\* Node n learns the new ring (gossip, members.py _set_view).
ChangeView(n) ==
    /\ Pref2 # Pref
    /\ up[n]
    /\ view[n] = 1
    /\ view' = [view EXCEPT ![n] = 2]
    /\ UNCHANGED <<nodeVars, envVars, historyVars, reaps, fwds, buried, moved>>

\* Where n sends key k it no longer replicates: the replicas its ring change
\* added, or all of them if it added none (members.py _ring_changed).
XferTargets(n, k) ==
    LET other == IF view[n] = 1 THEN Pref2 ELSE Pref
        added == ReplicasOf(n, k) \ {other[k][i] : i \in 1..N}
    IN IF added # {} THEN added ELSE ReplicasOf(n, k)

\* n sends its versions of k to target t: at the change, and again while
\* unacked or after writes arrived during the transfer (TransferPartition).
TransferPartition(n, t, k) ==
    /\ up[n]
    /\ n \notin ReplicasOf(n, k)
    /\ store[n][k] # {}
    /\ t \in XferTargets(n, k)
    /\ InFlight < MaxMsgs
    /\ Send(Msg("transfer", n, t, k, store[n][k], 0, NoNode))
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, faults, historyVars, extraVars>>

\* Node i, a replica of the key on its ring, merges a transfer and acks what
\* it got (ReceiveTransfer).
ReceiveTransfer(i, m) ==
    /\ Delivers(i, m, "transfer")
    /\ i \in ReplicasOf(i, m.mkey)
    /\ store' = [store EXCEPT ![i][m.mkey] = Reconcile(@ \cup m.mvers)]
    /\ Reply(Msg("transferAck", i, m.msrc, m.mkey, m.mvers, 0, NoNode), m)
    /\ UNCHANGED <<hints, putOps, getOps, up, cut, clock, gets, faults,
                   historyVars, extraVars>>

\* Node i has not learnt the ring on which it replicates the key: it takes
\* no part and does not ack, so the sender keeps the key and sends it again
\* (RefuseTransfer).  Were it to ack, it could hand the key back, and each
\* drop it on the other's ack.
RefuseTransfer(i, m) ==
    /\ Delivers(i, m, "transfer")
    /\ i \notin ReplicasOf(i, m.mkey)
    /\ Discard(m)
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, faults, historyVars, extraVars>>

\* Node i learns that m.msrc holds what i sent it (TransferAck).
TransferAck(i, m) ==
    /\ Delivers(i, m, "transferAck")
    /\ moved' = [moved EXCEPT ![i] = @ \cup
                   {[key |-> m.mkey, target |-> m.msrc, vers |-> m.mvers]}]
    /\ Discard(m)
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, faults, historyVars,
                   reaps, fwds, buried, view>>

\* Every target acked all n holds of k, nothing written since: n drops the
\* key (DropPartition).
DropPartition(n, k) ==
    /\ up[n]
    /\ n \notin ReplicasOf(n, k)
    /\ store[n][k] # {}
    /\ \A t \in XferTargets(n, k) :
          [key |-> k, target |-> t, vers |-> store[n][k]] \in moved[n]
    /\ store' = [store EXCEPT ![n][k] = {}]
    /\ moved' = [moved EXCEPT ![n] = {x \in @ : x.key # k}]
    /\ UNCHANGED <<hints, putOps, getOps, envVars, historyVars, reaps, fwds,
                   buried, view>>

----------------------------------------------------------------------------
\* Faults.

\* Node n stops: what it coordinates is lost, its stores and hints stay.
Crash(n) ==
    /\ up[n]
    /\ faults.crash < MaxCrashes
    /\ up' = [up EXCEPT ![n] = FALSE]
    /\ putOps' = [putOps EXCEPT ![n] = {}]
    /\ getOps' = [getOps EXCEPT ![n] = {}]
    /\ reaps' = [reaps EXCEPT ![n] = {}]
    /\ moved' = [moved EXCEPT ![n] = {}]
    /\ faults' = [faults EXCEPT !.crash = @ + 1]
    /\ UNCHANGED <<store, hints, msgs, cut, clock, gets, historyVars, fwds, buried, view>>

Recover(n) ==
    /\ ~up[n]
    /\ up' = [up EXCEPT ![n] = TRUE]
    /\ UNCHANGED <<nodeVars, msgs, cut, clock, gets, faults, historyVars, extraVars>>

\* The link between i and j is cut: messages wait on it until it heals.
Partition(i, j) ==
    /\ i # j
    /\ Linked(i, j)
    /\ faults.partition < MaxPartitions
    /\ cut' = cut \cup {{i, j}}
    /\ faults' = [faults EXCEPT !.partition = @ + 1]
    /\ UNCHANGED <<nodeVars, up, msgs, clock, gets, historyVars, extraVars>>

Heal(i, j) ==
    /\ {i, j} \in cut
    /\ cut' = cut \ {{i, j}}
    /\ UNCHANGED <<nodeVars, up, msgs, clock, gets, faults, historyVars, extraVars>>

\* A message in flight vanishes.
LoseMessage ==
    /\ faults.loss < MaxLosses
    /\ \E m \in DOMAIN msgs : Discard(m)
    /\ faults' = [faults EXCEPT !.loss = @ + 1]
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, historyVars, extraVars>>

\* A message in flight is copied: both copies can be delivered.
DuplicateMessage ==
    /\ faults.dup < MaxDups
    /\ InFlight < MaxMsgs
    /\ \E m \in DOMAIN msgs : Send(m)
    /\ faults' = [faults EXCEPT !.dup = @ + 1]
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, historyVars, extraVars>>

----------------------------------------------------------------------------
\* Node i takes a message off the network and handles it with the one action
\* for its kind (each checks that m is of its kind and can be delivered).
Receive(i) ==
    \E m \in DOMAIN msgs :
        \/ ReplicaStore(i, m)
        \/ StoreAck(i, m)
        \/ ReplicaRead(i, m)
        \/ ReadResponse(i, m)
        \/ ReplicaReap(i, m)
        \/ ReceiveTransfer(i, m)
        \/ RefuseTransfer(i, m)
        \/ TransferAck(i, m)

Init ==
    /\ store = [n \in Nodes |-> [k \in Keys |-> {}]]
    /\ hints = [n \in Nodes |-> {}]
    /\ putOps = [n \in Nodes |-> {}]
    /\ getOps = [n \in Nodes |-> {}]
    /\ up = [n \in Nodes |-> TRUE]
    /\ msgs = EmptyBag
    /\ cut = {}
    /\ clock = 0
    /\ gets = 0
    /\ faults = [crash |-> 0, partition |-> 0, loss |-> 0, dup |-> 0]
    /\ acked = {}
    /\ saw = [t \in PutIds |-> {}]
    /\ answered = {}
    /\ stored = [t \in PutIds |-> {}]
    /\ reaps = [n \in Nodes |-> {}]
    /\ fwds = {}
    /\ buried = [k \in Keys |-> {}]
    /\ moved = [n \in Nodes |-> {}]
    /\ view = [n \in Nodes |-> 1]

\* Every quantifier here ranges over a constant set, so that TLC names each
\* step of a counterexample by its action.
Next ==
    \/ \E c \in Nodes, k \in Keys, v \in WriteValues : ClientPut(c, k, v)
    \/ \E c \in Nodes, k \in Keys, v \in WriteValues : ClientForward(c, k, v)
    \/ \E c \in Nodes, k \in Keys : ClientForwardGet(c, k)
    \/ \E j \in Nodes : ForwardedPut(j)
    \/ \E j \in Nodes : ForwardedGet(j)
    \/ \E c \in Nodes, id \in PutIds : PutTimeout(c, id)
    \/ \E c, h \in Nodes, id \in PutIds : SloppyFallback(c, id, h)
    \/ \E c \in Nodes, k \in Keys : ClientGet(c, k)
    \/ \E c \in Nodes, id \in GetIds : ReadRepair(c, id)
    \/ \E i \in Nodes : Receive(i)
    \/ \E f, h \in Nodes, k \in Keys : HandoffHint(f, h, k)
    \/ \E i, j \in Nodes, k \in Keys : AntiEntropy(i, j, k)
    \/ \E c \in Nodes, k \in Keys : ReapTombstone(c, k)
    \/ \E n \in Nodes : ChangeView(n)
    \/ \E n, t \in Nodes, k \in Keys : TransferPartition(n, t, k)
    \/ \E n \in Nodes, k \in Keys : DropPartition(n, k)
    \/ \E n \in Nodes : Crash(n)
    \/ \E n \in Nodes : Recover(n)
    \/ \E i, j \in Nodes : Partition(i, j)
    \/ \E i, j \in Nodes : Heal(i, j)
    \/ LoseMessage
    \/ DuplicateMessage

Spec == Init /\ [][Next]_vars

\* Once the bounded faults are spent, crashed nodes recover, cut links heal,
\* messages are delivered, and handoff and anti-entropy run.
Fairness ==
    /\ \A n \in Nodes : WF_vars(Recover(n))
    /\ \A i, j \in Nodes : WF_vars(Heal(i, j))
    /\ \A i \in Nodes : WF_vars(Receive(i))
    /\ \A f, h \in Nodes, k \in Keys : WF_vars(HandoffHint(f, h, k))

FairSpec ==
    /\ Spec
    /\ Fairness
    /\ \A i, j \in Nodes, k \in Keys : WF_vars(AntiEntropy(i, j, k))

\* The same without anti-entropy: a replica that misses a write may stay
\* behind forever.
FairSpecNoAntiEntropy == Spec /\ Fairness

----------------------------------------------------------------------------
\* Properties.

\* Every version of k anywhere: on replicas (running or not) and in hints.
Present(k) ==
    UNION {store[n][k] : n \in Nodes} \cup
    {h.ver : h \in {h \in UNION {hints[n] : n \in Nodes} : h.key = k}}

Clock == [Nodes -> 0..MaxClock]
Version == [val : Values \cup {Tomb}, vc : Clock, ts : 1..MaxClock,
            wr : Nodes \cup {NoNode}, dot : 0..MaxClock]
MsgType == {"store", "storeAck", "read", "readResp", "reap", "transfer",
            "transferAck"}

TypeOK ==
    /\ store \in [Nodes -> [Keys -> SUBSET Version]]
    /\ hints \in [Nodes -> SUBSET [key : Keys, owner : Nodes, ver : Version]]
    /\ \A n \in Nodes : \A op \in putOps[n] :
          /\ op.id \in 1..MaxClock
          /\ op.key \in Keys
          /\ op.ver \in Version
          /\ op.acks \cup op.hinted \cup op.extra \subseteq Nodes
    /\ \A n \in Nodes : \A op \in getOps[n] :
          /\ op.id \in 1..MaxGets
          /\ op.key \in Keys
          /\ DOMAIN op.resps \subseteq Nodes
          /\ DOMAIN op.stand \subseteq Nodes
          /\ \A f \in DOMAIN op.stand : op.stand[f] \in Nodes
          /\ \A x \in DOMAIN op.resps : op.resps[x] \subseteq Version
          /\ op.after \in Nat
          /\ op.done \in BOOLEAN
    /\ up \in [Nodes -> BOOLEAN]
    /\ IsABag(msgs)
    /\ \A m \in DOMAIN msgs :
          /\ m.mtype \in MsgType
          /\ {m.msrc, m.mdest} \subseteq Nodes
          /\ m.mkey \in Keys
          /\ m.mvers \subseteq Version
          /\ m.mop \in Nat
          /\ m.mhint \in Nodes \cup {NoNode}
    /\ cut \subseteq {{i, j} : i, j \in Nodes}
    /\ clock \in 0..MaxClock
    /\ gets \in 0..MaxGets
    /\ faults \in [{"crash", "partition", "loss", "dup"} -> Nat]
    /\ acked \subseteq [key : Keys, ver : Version, seq : Nat, epoch : Nat]
    /\ saw \in [PutIds -> SUBSET PutIds]
    /\ stored \in [PutIds -> SUBSET Nodes]
    /\ answered \subseteq [key : Keys, vers : SUBSET Version, after : Nat,
                           epoch : Nat]
    /\ reaps \in [Nodes -> SUBSET [key : Keys, vers : SUBSET Version]]
    /\ fwds \subseteq [type : {"put", "get"}, src : Nodes, dst : Nodes,
                       key : Keys, val : Values \cup {Tomb},
                       vers : SUBSET Version, seen : SUBSET PutIds]
    /\ buried \in [Keys -> SUBSET Version]
    /\ moved \in [Nodes -> SUBSET [key : Keys, target : Nodes, vers : SUBSET Version]]
    /\ view \in [Nodes -> {1, 2}]
    /\ \A k \in Keys : \A v \in buried[k] : IsTomb(v)
    \* A version's form follows the mode: a dot exactly in DVV.
    /\ \A k \in Keys : \A v \in Present(k) :
          IF DVV THEN v.wr \in Nodes /\ v.dot > 0
          ELSE v.wr = NoNode /\ v.dot = 0

\* Each promise below holds key by key (its ...At(k)): trace validation checks
\* only the keys a step changed (DynamoTrace.tla's dirty).

\* No replica keeps a version that another of its versions makes obsolete.
SiblingsAntichainAt(k) ==
    \A n \in Nodes : \A u, v \in store[n][k] : ~Supersedes(u, v)

SiblingsAntichain == \A k \in Keys : SiblingsAntichainAt(k)

\* An acknowledged write is never lost: it, or a version that causally
\* follows it, is stored somewhere, or was a tombstone since reaped.
\* Causality is judged by the clocks (After), which LWW mode carries along
\* without using them.
AckedWritesSurviveAt(k) ==
    LET held == Present(k) \cup buried[k]
    IN \A a \in acked :
          a.key = k => \E u \in held : u = a.ver \/ After(u, a.ver)

AckedWritesSurvive == \A k \in Keys : AckedWritesSurviveAt(k)

\* AckedWritesSurvive as the clients see it: an acknowledged write is stored
\* somewhere, or a version whose writer had seen it is.  Vector clocks can
\* make a version dominate a sibling its writer never saw: two puts with the
\* same context through one coordinator, whose counter the second takes past
\* the first's.  The clocks then call the first overwritten, the clients see
\* it lost (the fault harness's lost-writes checker reports such writes).
CausalWritesSurviveAt(k) ==
    LET held == Present(k) \cup buried[k]
    IN \A a \in acked :
          a.key = k => \E u \in held : u = a.ver \/ a.ver.ts \in saw[u.ts]

CausalWritesSurvive == \A k \in Keys : CausalWritesSurviveAt(k)

\* The converse promise: a version supersedes only versions its writer had
\* seen, so a write is never overwritten by one that did not know of it.
\* Dotted version vectors keep it; plain vector clocks break it (a
\* coordinator's counter claims every write through it) and LWW by design.
OverwritesSeen ==
    \A k \in Keys : \A u, v \in Present(k) :
        Supersedes(u, v) => v.ts \in saw[u.ts]

\* A delete is not undone: whatever an acknowledged tombstone superseded
\* stays superseded by a present version, also once the tombstone is reaped
\* (then nothing it superseded may be left anywhere).
DeletesNotUndoneAt(k) ==
    \A d \in acked :
        (d.key = k /\ IsTomb(d.ver)) =>
            \A u \in Present(k) :
                Supersedes(d.ver, u) => \E w \in Present(k) : Supersedes(w, u)

DeletesNotUndone == \A k \in Keys : DeletesNotUndoneAt(k)

\* A read that began after a write was acked, with no crash or partition
\* between that ack and the answer, returns the write or a descendant.
\* Holds for R + W > N with a strict quorum.
StrictQuorumReadOf(rd) ==
    \A a \in acked :
        (/\ a.key = rd.key
         /\ a.seq <= rd.after
         /\ a.epoch = rd.epoch
         /\ Settled(a.epoch))
        => \E u \in rd.vers : u = a.ver \/ After(u, a.ver)

StrictQuorumRead == \A rd \in answered : StrictQuorumReadOf(rd)

\* With PR + PW > N a read meets every answered put on a replica, whatever
\* happened between: it returns the write or a descendant, under a sloppy
\* quorum and across crashes and partitions too.
PrimaryQuorumRead ==
    \A rd \in answered, a \in acked :
        (a.key = rd.key /\ a.seq <= rd.after)
        => \E u \in rd.vers : u = a.ver \/ After(u, a.ver)

\* StrictQuorumRead as LWW promises it: such a read returns the write or a
\* later one (timestamps compared directly, not through Supersedes, so that a
\* bug in the resolution rule cannot also bend the promise).  With vector
\* clocks it is StrictQuorumRead.
LatestQuorumRead ==
    \A rd \in answered, a \in acked :
        (/\ a.key = rd.key
         /\ a.seq <= rd.after
         /\ a.epoch = rd.epoch)
        => \E u \in rd.vers :
              \/ u = a.ver
              \/ IF LWW THEN u.ts > a.ver.ts ELSE After(u, a.ver)

\* An answered put had W acks: W distinct nodes stored its version (as a
\* replica or as hints) before the client was told it succeeded, PW of them
\* replicas of its key.
WriteQuorum ==
    \A a \in acked :
        /\ Cardinality(stored[a.ver.ts]) >= W
        /\ Cardinality(stored[a.ver.ts] \cap Replicas(a.key)) >= PW

\* Hints are held by fallbacks, for a replica of their key (on one of the
\* rings).
HintsHeldByFallbacks ==
    \A n \in Nodes : \A x \in hints[n] :
        \E P \in {Pref, Pref2} :
            LET reps == {P[x.key][i] : i \in 1..N}
            IN x.owner \in reps /\ n \notin reps

\* A fallback drops a hint only once its owner has stored the version (its
\* ack says so), never when it merely sends it: the copy in flight may be
\* lost, and the hint is then the only copy meant for the owner.
HintsHeldUntilStored ==
    [][\A n \in Nodes : \A x \in hints[n] \ hints'[n] :
          \/ \E u \in store'[x.owner][x.key] : u = x.ver \/ Supersedes(u, x.ver)
          \* After a ring change the owner may have stored it and handed the key on.
          \/ x.owner \notin ReplicasOf(x.owner, x.key)]_vars

\* A write supersedes every write its writer had seen: the clocks follow the
\* clients' contexts.  In DVV mode a context leaves out a dot beyond a gap,
\* and the write then keeps that version as a (false) sibling: it holds there
\* only while no read can miss a write through a node and see a later one,
\* which takes three puts.
ClocksFollowContexts ==
    \A k \in Keys : \A u, v \in Present(k) :
        v.ts \in saw[u.ts] => Supersedes(u, v)

\* Two writes never get the same clock (in DVV mode, the same dot): a
\* coordinator's counter names one write alone.
UniqueClocks ==
    \A k \in Keys : \A u, v \in Present(k) :
        (IF DVV THEN u.wr = v.wr /\ u.dot = v.dot ELSE u.vc = v.vc) => u = v

\* A node drops a key it no longer replicates only once every new replica it
\* hands the key to holds all it held (the version or one superseding it):
\* also what reached it while the transfer was under way.
TransfersComplete ==
    [][\A n \in Nodes, k \in Keys :
          (/\ store[n][k] # {}
           /\ store'[n][k] = {}
           /\ buried'[k] = buried[k])
          => \A t \in XferTargets(n, k), v \in store[n][k] :
                \E u \in store'[t][k] : u = v \/ Supersedes(u, v)]_vars

\* A replica's clock for a key, the join of its versions' clocks and dots,
\* never goes back, but for a reap, which drops the key.  (An unchanged
\* store is tested first only to spare TLC the joins: Leq is reflexive.)
ClockMonotone ==
    [][\A n \in Nodes, k \in Keys :
          \/ store'[n][k] = store[n][k]
          \/ store'[n][k] = {}
          \/ Leq(HistoryAll(store[n][k]), HistoryAll(store'[n][k]))]_vars

Converged ==
    \A k \in Keys : \A i, j \in Replicas(k) : store[i][k] = store[j][k]

\* Once faults stop, the replicas of every key end with equal version sets.
Convergence == <>[]Converged

\* And every hint is eventually handed off.
HintsDrained == <>[](\A n \in Nodes : hints[n] = {})

----------------------------------------------------------------------------
\* Reachability witnesses: invariants that must FAIL, showing that the
\* positive models reach the states their properties speak of.

\* Some read begins after a write's ack, with no fault between, and answers.
NoReadAfterAck ==
    ~\E rd \in answered, a \in acked :
        a.key = rd.key /\ a.seq <= rd.after /\ a.epoch = rd.epoch

\* Some replica holds two siblings.
NoSiblings == \A n \in Nodes, k \in Keys : Cardinality(store[n][k]) <= 1

\* Some get's coordinator sends read repair: a store for no put and no
\* handoff.
NoReadRepair ==
    ~\E m \in DOMAIN msgs :
        m.mtype = "store" /\ m.mop = 0 /\ m.mhint # m.mdest

\* Some present version's writer had seen another present version it does not
\* supersede: a DVV context left out a dot beyond a gap.
NoGapSibling ==
    ~\E k \in Keys : \E u, v \in Present(k) :
        v.ts \in saw[u.ts] /\ ~Supersedes(u, v)

\* Some acknowledged write is held as a hint.
NoAckedHint ==
    ~\E a \in acked, n \in Nodes : \E h \in hints[n] : h.ver = a.ver

=============================================================================
