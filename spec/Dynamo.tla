------------------------------- MODULE Dynamo -------------------------------
(***************************************************************************)
(* Amazon's Dynamo (DeCandia et al., SOSP 2007): a replicated key-value    *)
(* store with N/R/W quorums, vector clocks and sibling versions, read      *)
(* repair, sloppy quorum with hinted handoff, and anti-entropy.            *)
(*                                                                         *)
(* A node's actions are named after the handlers of                       *)
(* dynamo_ref.core.node.Node that implement them: one per client request,  *)
(* per timer and per message kind, the last chosen by Receive(i).  Faults  *)
(* are named after the simulator's fault injections.  Variables are plain *)
(* functions and records over nodes, keys, values and naturals, so that a  *)
(* trace-validation spec can read the simulator's traces.                  *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets, Sequences, Bags, TLC

\* The nodes, the keys and the values clients write.
CONSTANTS Nodes, Keys, Values

\* Replication factor, read quorum and write quorum.
CONSTANTS N, R, W

\* Pref[k]: every node, in ring order from k's position (the extended
\* preference list).  The first N are k's replicas, the rest its fallbacks.
CONSTANT Pref

\* Sloppy: unreachable replicas are replaced by fallbacks carrying a hint.
\* LWW: siblings are resolved by last-writer-wins instead of vector clocks.
CONSTANTS Sloppy, LWW

\* A value that is not a node: the hint of a version stored for its owner.
CONSTANT NoNode

\* Bounds that keep the state space finite: client puts (they also bound
\* timestamps and vector-clock counters), client gets, messages in flight,
\* and each kind of fault.
CONSTANTS MaxClock, MaxGets, MaxMsgs,
          MaxCrashes, MaxPartitions, MaxLosses, MaxDups

ASSUME /\ N \in 1..Cardinality(Nodes)
       /\ R \in 1..N
       /\ W \in 1..N
       /\ Sloppy \in BOOLEAN
       /\ LWW \in BOOLEAN
       /\ NoNode \notin Nodes
       /\ \A k \in Keys : /\ Len(Pref[k]) = Cardinality(Nodes)
                          /\ {Pref[k][i] : i \in 1..Len(Pref[k])} = Nodes
       /\ \A b \in {MaxClock, MaxGets, MaxMsgs, MaxCrashes, MaxPartitions,
                    MaxLosses, MaxDups} : b \in Nat

----------------------------------------------------------------------------
\* Durable per-node state: kept across a crash.

\* store[n][k]: the sibling set node n holds for key k, each a version
\* [val, vc, ts] with a vector clock and a timestamp.
VARIABLE store

\* hints[n]: versions n holds for a replica it stood in for, as records
\* [key, owner, ver].  Kept apart from store until handed off.
VARIABLE hints

\* Volatile per-node state: lost in a crash.

\* putOps[n]: the puts n coordinates that are not yet answered, each
\* [id, key, ver, acks, hinted, extra]: the nodes that acked, the replicas
\* replaced by a fallback, and the fallbacks used.
VARIABLE putOps

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

nodeVars == <<store, hints, putOps, getOps>>
envVars == <<up, msgs, cut, clock, gets, faults>>
historyVars == <<acked, answered, saw, stored>>
vars == <<nodeVars, envVars, historyVars>>

----------------------------------------------------------------------------
\* Helpers.

Max(S) == CHOOSE x \in S : \A y \in S : y <= x
Min(S) == CHOOSE x \in S : \A y \in S : x <= y

Replicas(k) == {Pref[k][i] : i \in 1..N}

ZeroClock == [n \in Nodes |-> 0]

\* Vector clocks: a happened before or equals b.
Leq(a, b) == \A n \in Nodes : a[n] <= b[n]

\* The least clock above every clock of a set of versions.
JoinAll(S) == [n \in Nodes |-> Max({v.vc[n] : v \in S} \cup {0})]

\* Version u causally follows version v.
Descends(u, v) == Leq(v.vc, u.vc) /\ u.vc # v.vc

\* Version u makes v obsolete on a replica: by causality, or by a later
\* timestamp in LWW mode (the timestamps are unique, so no tie break is
\* needed here; the node breaks ties by node id).
Supersedes(u, v) == IF LWW THEN u.ts > v.ts ELSE Descends(u, v)

\* What a replica keeps of a set of versions.
Reconcile(S) == {v \in S : ~\E u \in S : Supersedes(u, v)}

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

\* Crashes and partitions so far.
Epoch == faults.crash + faults.partition

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

\* Record get op new at c in place of the set old, and answer the client
\* once R replicas have responded.
UpdateGet(c, old, new) ==
    IF ~new.done /\ Cardinality(DOMAIN new.resps) >= R
    THEN /\ getOps' = [getOps EXCEPT ![c] = (@ \ old) \cup
                                           {[new EXCEPT !.done = TRUE]}]
         /\ answered' = answered \cup
              {[key |-> new.key,
                vers |-> Reconcile(UNION {new.resps[n] : n \in DOMAIN new.resps}),
                after |-> new.after,
                epoch |-> Epoch]}
    ELSE /\ getOps' = [getOps EXCEPT ![c] = (@ \ old) \cup {new}]
         /\ UNCHANGED answered

\* Record put op new at c in place of the set old; once W nodes hold the
\* write, the client gets its ack and c forgets the put.
UpdatePut(c, old, new) ==
    IF Cardinality(new.acks) >= W
    THEN /\ putOps' = [putOps EXCEPT ![c] = @ \ old]
         /\ acked' = acked \cup {[key |-> new.key, ver |-> new.ver,
                                  seq |-> Cardinality(acked) + 1,
                                  epoch |-> Epoch]}
    ELSE /\ putOps' = [putOps EXCEPT ![c] = (@ \ old) \cup {new}]
         /\ UNCHANGED acked

----------------------------------------------------------------------------
\* Client requests and their coordination.

\* A client puts value v for key k at replica c, with the context ctx of an
\* earlier read or none.  c increments its own entry past both the context
\* and every clock it holds for k, so the counter names this write alone; it
\* stores the version, which counts as the first ack, and sends it to the
\* other replicas.
ClientPut(c, k, v) ==
    /\ up[c]
    /\ c \in Replicas(k)
    /\ clock < MaxClock
    /\ InFlight + N - 1 <= MaxMsgs
    /\ \E rd \in Reads(k) :
       LET ctx == JoinAll(rd.vers)
           counter == Max({ctx[c]} \cup {u.vc[c] : u \in store[c][k]}) + 1
           ver == [val |-> v, vc |-> [ctx EXCEPT ![c] = counter],
                   ts |-> clock + 1]
       IN /\ clock' = clock + 1
          /\ store' = [store EXCEPT ![c][k] = Reconcile(@ \cup {ver})]
          /\ UpdatePut(c, {}, [id |-> clock + 1, key |-> k, ver |-> ver,
                               acks |-> {c}, hinted |-> {}, extra |-> {}])
          /\ SendAll({Msg("store", c, j, k, {ver}, clock + 1, NoNode) :
                        j \in Replicas(k) \ {c}})
          /\ saw' = [saw EXCEPT ![clock + 1] =
                        UNION {saw[u.ts] \cup {u.ts} : u \in rd.vers}]
          /\ stored' = [stored EXCEPT ![clock + 1] = {c}]
    /\ UNCHANGED <<hints, getOps, up, cut, gets, faults, answered>>

\* Replica i stores the versions of a store message, or keeps them as hints
\* when it stands in for replica m.mhint.  One handler serves puts (acked to
\* put m.mop), read repair (mop = 0, not acked) and hinted handoff (mhint is
\* i itself, acked so that the sender can drop its hints).
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
       THEN Reply(Msg("storeAck", i, m.msrc, m.mkey, m.mvers, m.mop, m.mhint), m)
       ELSE Discard(m)
    /\ stored' = IF m.mop # 0 THEN [stored EXCEPT ![m.mop] = @ \cup {i}] ELSE stored
    /\ UNCHANGED <<putOps, getOps, up, cut, clock, gets, faults, acked, answered, saw>>

\* Node i learns that m.msrc stored m.mvers.  It is an ack for put m.mop,
\* answered to the client once W nodes hold the write; and when m.msrc stored
\* them as a replica (not as hints), i drops its hints for m.msrc of them.
StoreAck(i, m) ==
    /\ Delivers(i, m, "storeAck")
    /\ LET ops == {op \in putOps[i] : op.id = m.mop}
       IN IF ops = {}
          THEN UNCHANGED <<putOps, acked>>
          ELSE LET op == CHOOSE x \in ops : TRUE
               IN UpdatePut(i, {op}, [op EXCEPT !.acks = @ \cup {m.msrc}])
    /\ hints' = IF m.mhint \in {NoNode, m.msrc}
                THEN [hints EXCEPT ![i] =
                        {h \in @ : ~(/\ h.owner = m.msrc
                                     /\ h.key = m.mkey
                                     /\ h.ver \in m.mvers)}]
                ELSE hints
    /\ Discard(m)
    /\ UNCHANGED <<store, getOps, up, cut, clock, gets, faults, answered, saw, stored>>

\* The timer of put id fires at c before W acks: the client is told the put
\* failed, though the replicas that stored it keep it.
PutTimeout(c, id) ==
    /\ up[c]
    /\ \E op \in putOps[c] :
          /\ op.id = id
          /\ Cardinality(op.acks) < W
          /\ putOps' = [putOps EXCEPT ![c] = @ \ {op}]
    /\ UNCHANGED <<store, hints, getOps, envVars, historyVars>>

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
          /\ h \in Replicas(k) \ (op.acks \cup op.hinted)
          /\ \E i \in (N + 1)..Len(Pref[k]) :
                LET f == Pref[k][i]
                IN /\ f \notin op.extra
                   /\ putOps' = [putOps EXCEPT ![c] = (@ \ {op}) \cup
                                    {[op EXCEPT !.hinted = @ \cup {h},
                                                !.extra = @ \cup {f}]}]
                   /\ Send(Msg("store", c, f, k, {op.ver}, id, h))
    /\ UNCHANGED <<store, hints, getOps, up, cut, clock, gets, faults,
                   historyVars>>

\* The fallbacks of key k: the nodes after the N replicas in its preference
\* list.
Fallbacks(k) == {Pref[k][i] : i \in (N + 1)..Len(Pref[k])}

NoStandIns == [f \in {} |-> NoNode]

\* Under a sloppy quorum, a get coordinated by c may read fallbacks in place of
\* replicas it holds down: a function from each fallback read to the replica
\* it stands in for, one fallback a replica.
StandIns(c, k) ==
    IF Sloppy
    THEN {s \in UNION {[F -> Replicas(k) \ {c}] : F \in SUBSET Fallbacks(k)} :
            \A f, g \in DOMAIN s : f # g => s[f] # s[g]}
    ELSE {NoStandIns}

\* The nodes get op reads besides its coordinator.
ReadTargets(op) ==
    (Replicas(op.key) \ {op.stand[f] : f \in DOMAIN op.stand}) \cup DOMAIN op.stand

\* The owner a node stands in for in get op, or NoNode for a replica.
StandsFor(op, n) == IF n \in DOMAIN op.stand THEN op.stand[n] ELSE NoNode

\* A client gets key k at replica c, which reads its own store and asks the
\* other replicas, or fallbacks in place of those it holds down (their read
\* names the replica, so that they answer with their hints for it too).
ClientGet(c, k) ==
    /\ up[c]
    /\ c \in Replicas(k)
    /\ gets < MaxGets
    /\ InFlight + N - 1 <= MaxMsgs
    /\ gets' = gets + 1
    /\ \E stand \in StandIns(c, k) :
       LET op == [id |-> gets + 1, key |-> k, resps |-> (c :> store[c][k]),
                  stand |-> stand, after |-> Cardinality(acked), done |-> FALSE]
       IN /\ UpdateGet(c, {}, op)
          /\ SendAll({Msg("read", c, j, k, {}, gets + 1, StandsFor(op, j)) :
                        j \in ReadTargets(op) \ {c}})
    /\ UNCHANGED <<store, hints, putOps, up, cut, clock, faults, acked, saw, stored>>

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
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, faults, historyVars>>

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
                   stored>>

\* After answering get id, coordinator c sends the reconciled versions to
\* every responder that returned something else (to a fallback as hints for
\* the replica it stood in for), and forgets the get.
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
    /\ UNCHANGED <<hints, putOps, up, cut, clock, gets, faults, historyVars>>

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
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, faults, historyVars>>

\* Replicas i and j of key k compare their versions (by Merkle trees in the
\* node) and both keep the reconciliation of the two sets.
AntiEntropy(i, j, k) ==
    /\ {i, j} \subseteq Replicas(k)
    /\ i # j
    /\ up[i] /\ up[j]
    /\ Linked(i, j)
    /\ store[i][k] # store[j][k]
    /\ LET merged == Reconcile(store[i][k] \cup store[j][k])
       IN store' = [store EXCEPT ![i][k] = merged, ![j][k] = merged]
    /\ UNCHANGED <<hints, putOps, getOps, envVars, historyVars>>

----------------------------------------------------------------------------
\* Faults.

\* Node n stops: what it coordinates is lost, its stores and hints stay.
Crash(n) ==
    /\ up[n]
    /\ faults.crash < MaxCrashes
    /\ up' = [up EXCEPT ![n] = FALSE]
    /\ putOps' = [putOps EXCEPT ![n] = {}]
    /\ getOps' = [getOps EXCEPT ![n] = {}]
    /\ faults' = [faults EXCEPT !.crash = @ + 1]
    /\ UNCHANGED <<store, hints, msgs, cut, clock, gets, historyVars>>

Recover(n) ==
    /\ ~up[n]
    /\ up' = [up EXCEPT ![n] = TRUE]
    /\ UNCHANGED <<nodeVars, msgs, cut, clock, gets, faults, historyVars>>

\* The link between i and j is cut: messages wait on it until it heals.
Partition(i, j) ==
    /\ i # j
    /\ Linked(i, j)
    /\ faults.partition < MaxPartitions
    /\ cut' = cut \cup {{i, j}}
    /\ faults' = [faults EXCEPT !.partition = @ + 1]
    /\ UNCHANGED <<nodeVars, up, msgs, clock, gets, historyVars>>

Heal(i, j) ==
    /\ {i, j} \in cut
    /\ cut' = cut \ {{i, j}}
    /\ UNCHANGED <<nodeVars, up, msgs, clock, gets, faults, historyVars>>

\* A message in flight vanishes.
LoseMessage ==
    /\ faults.loss < MaxLosses
    /\ \E m \in DOMAIN msgs : Discard(m)
    /\ faults' = [faults EXCEPT !.loss = @ + 1]
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, historyVars>>

\* A message in flight is copied: both copies can be delivered.
DuplicateMessage ==
    /\ faults.dup < MaxDups
    /\ InFlight < MaxMsgs
    /\ \E m \in DOMAIN msgs : Send(m)
    /\ faults' = [faults EXCEPT !.dup = @ + 1]
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, historyVars>>

----------------------------------------------------------------------------
\* Node i takes a message off the network and handles it with the one action
\* for its kind (each checks that m is of its kind and can be delivered).
Receive(i) ==
    \E m \in DOMAIN msgs :
        \/ ReplicaStore(i, m)
        \/ StoreAck(i, m)
        \/ ReplicaRead(i, m)
        \/ ReadResponse(i, m)

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

\* Every quantifier here ranges over a constant set, so that TLC names each
\* step of a counterexample by its action.
Next ==
    \/ \E c \in Nodes, k \in Keys, v \in Values : ClientPut(c, k, v)
    \/ \E c \in Nodes, id \in PutIds : PutTimeout(c, id)
    \/ \E c, h \in Nodes, id \in PutIds : SloppyFallback(c, id, h)
    \/ \E c \in Nodes, k \in Keys : ClientGet(c, k)
    \/ \E c \in Nodes, id \in GetIds : ReadRepair(c, id)
    \/ \E i \in Nodes : Receive(i)
    \/ \E f, h \in Nodes, k \in Keys : HandoffHint(f, h, k)
    \/ \E i, j \in Nodes, k \in Keys : AntiEntropy(i, j, k)
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

Clock == [Nodes -> 0..MaxClock]
Version == [val : Values, vc : Clock, ts : 1..MaxClock]
MsgType == {"store", "storeAck", "read", "readResp"}

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

\* No replica keeps a version that another of its versions makes obsolete.
SiblingsAntichain ==
    \A n \in Nodes, k \in Keys :
        \A u, v \in store[n][k] : ~Supersedes(u, v)

\* Every version of k anywhere: on replicas (running or not) and in hints.
Present(k) ==
    UNION {store[n][k] : n \in Nodes} \cup
    {h.ver : h \in {h \in UNION {hints[n] : n \in Nodes} : h.key = k}}

\* An acknowledged write is never lost: it, or a version that causally
\* follows it, is stored somewhere.  Causality is judged by the vector
\* clocks, which LWW mode carries along without using them.
AckedWritesSurvive ==
    \A a \in acked :
        \E u \in Present(a.key) : u = a.ver \/ Descends(u, a.ver)

\* AckedWritesSurvive as the clients see it: an acknowledged write is stored
\* somewhere, or a version whose writer had seen it is.  Vector clocks can
\* make a version dominate a sibling its writer never saw: two puts with the
\* same context through one coordinator, whose counter the second takes past
\* the first's.  The clocks then call the first overwritten, the clients see
\* it lost (the fault harness's lost-writes checker reports such writes).
CausalWritesSurvive ==
    \A a \in acked :
        \E u \in Present(a.key) : u = a.ver \/ a.ver.ts \in saw[u.ts]

\* A read that began after a write was acked, with no crash or partition
\* between that ack and the answer, returns the write or a descendant.
\* Holds for R + W > N with a strict quorum.
StrictQuorumRead ==
    \A rd \in answered, a \in acked :
        (/\ a.key = rd.key
         /\ a.seq <= rd.after
         /\ a.epoch = rd.epoch)
        => \E u \in rd.vers : u = a.ver \/ Descends(u, a.ver)

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
              \/ IF LWW THEN u.ts > a.ver.ts ELSE Descends(u, a.ver)

\* An answered put had W acks: W distinct nodes stored its version (as a
\* replica or as hints) before the client was told it succeeded.
WriteQuorum ==
    \A a \in acked : Cardinality(stored[a.ver.ts]) >= W

\* Hints are held by fallbacks, for a replica of their key.
HintsHeldByFallbacks ==
    \A n \in Nodes : \A x \in hints[n] :
        x.owner \in Replicas(x.key) /\ n \notin Replicas(x.key)

\* A fallback drops a hint only once its owner has stored the version (its
\* ack says so), never when it merely sends it: the copy in flight may be
\* lost, and the hint is then the only copy meant for the owner.
HintsHeldUntilStored ==
    [][\A n \in Nodes : \A x \in hints[n] \ hints'[n] :
          \E u \in store'[x.owner][x.key] : u = x.ver \/ Supersedes(u, x.ver)]_vars

\* A write supersedes every write its writer had seen: the clocks follow the
\* clients' contexts (the converse of CausalWritesSurvive).
ClocksFollowContexts ==
    \A k \in Keys : \A u, v \in Present(k) :
        v.ts \in saw[u.ts] => Supersedes(u, v)

\* Two writes never get the same clock: a coordinator's counter names one
\* write alone.
UniqueClocks ==
    \A k \in Keys : \A u, v \in Present(k) : u.vc = v.vc => u = v

\* A replica's clock for a key, the join of its versions' clocks, never
\* goes back.
ClockMonotone ==
    [][\A n \in Nodes, k \in Keys :
          Leq(JoinAll(store[n][k]), JoinAll(store'[n][k]))]_vars

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

\* Some acknowledged write is held as a hint.
NoAckedHint ==
    ~\E a \in acked, n \in Nodes : \E h \in hints[n] : h.ver = a.ver

=============================================================================
