---------------------------- MODULE DynamoTrace ----------------------------
(***************************************************************************)
(* Trace validation (Cirstea, Kuppe, Merz et al., "Validating Traces of   *)
(* Distributed Programs Against TLA+ Specifications", 2024): a recorded   *)
(* run is a behaviour of Dynamo when some behaviour of Dynamo takes, at    *)
(* every line of the trace, the recorded action with the recorded          *)
(* arguments and ends in the recorded state.                               *)
(*                                                                         *)
(* TraceData is generated from the trace by dynamo_ref.tla.trace: the      *)
(* constants of the run and TraceLog, its lines as records                 *)
(* [action, args, has, state].  A line without a state (has = FALSE)       *)
(* is one of several actions of one node step: only the state after the   *)
(* last of them was observed, so the others are only required to happen.  *)
(*                                                                         *)
(* TLC checks TraceIncomplete, an invariant that fails exactly when the    *)
(* last line is reached: a violation means the trace is accepted.  When   *)
(* TLC finishes without one, the trace is rejected, and the depth of its  *)
(* search is the last line some behaviour matched.                        *)
(***************************************************************************)
EXTENDS Dynamo, TraceData

\* l: the lines matched so far (line 1 is Init).
VARIABLE l

\* late[c]: the gets coordinator c has answered and the spec has forgotten,
\* which the node keeps until every replica has answered, so that late
\* responses are repaired too: [id, key, resps, stand, repair].  repair: the
\* responders the last late response showed stale.
VARIABLE late

\* past[n][k]: every sibling set n has held for k.  One half of the node's
\* anti-entropy merges what its peer held when it sent it.
VARIABLE past

\* dirty: the keys whose versions, hints, tombstones or acknowledged writes
\* the last step changed, the only keys whose promises it can break.
VARIABLE dirty

\* fresh: the reads the last step answered, the only ones whose promise
\* (StrictQuorumRead) it can break: a write acknowledged later is later than
\* every read already answered.
VARIABLE fresh

traceVars == <<l, late, past, dirty, fresh>>

----------------------------------------------------------------------------
\* What a state of the trace says of the spec's variables.

\* The trace records what a client was told of a read: its values and their
\* merged clock.
AnsweredView(A) ==
    {[key |-> a.key, vals |-> {v.val : v \in a.vers}, vc |-> Context(a.vers),
      after |-> a.after, epoch |-> a.epoch] : a \in A}

IsState(s) ==
    /\ store = s.store
    /\ hints = s.hints
    /\ putOps = s.putOps
    /\ getOps = s.getOps
    /\ up = s.up
    /\ msgs = s.msgs
    /\ cut = s.cut
    /\ clock = s.clock
    /\ gets = s.gets
    /\ faults = s.faults
    /\ acked = s.acked
    /\ AnsweredView(answered) = s.answered

\* The same of the next state.  Written out: priming IsState(e.state)
\* would prime the line number inside e too.
IsNextState(s) ==
    /\ store' = s.store
    /\ hints' = s.hints
    /\ putOps' = s.putOps
    /\ getOps' = s.getOps
    /\ up' = s.up
    /\ msgs' = s.msgs
    /\ cut' = s.cut
    /\ clock' = s.clock
    /\ gets' = s.gets
    /\ faults' = s.faults
    /\ acked' = s.acked
    /\ AnsweredView(answered') = s.answered

----------------------------------------------------------------------------
\* Messages named by a line's arguments: i takes the message of the given
\* kind from src for key k and op.

Takes(i, src, k, op, type) ==
    {m \in DOMAIN msgs : /\ m.mtype = type /\ m.mdest = i /\ m.msrc = src
                         /\ m.mkey = k /\ m.mop = op}

Latest(resps) == Reconcile(UNION {resps[n] : n \in DOMAIN resps})

----------------------------------------------------------------------------
\* The node beyond the spec.  Each is a step of the node that Dynamo.tla does
\* not have, stated as exactly as the node takes it; the verdict counts the
\* lines that needed one.

\* A get not answered in time is dropped (the spec's gets never time out).
GetTimeout(c, id) ==
    /\ up[c]
    /\ \E op \in getOps[c] :
          /\ op.id = id
          /\ ~op.done
          /\ getOps' = [getOps EXCEPT ![c] = @ \ {op}]
    /\ UNCHANGED <<store, hints, putOps, envVars, historyVars, extraVars>>

\* The node forgets a get once every replica it asked has answered and no
\* repair is due: so does late, which would otherwise grow with every get.
Unsettled(c, S) ==
    {g \in S : g.repair # {} \/ ~(ReadTargets(c, g) \subseteq DOMAIN g.resps)}

\* A response to a get the spec has forgotten: recorded, and the responders
\* it shows stale are marked for repair.
LateUpdated(i, m) ==
    {IF /\ g.id = m.mop
        /\ g.key = m.mkey
        /\ m.msrc \in ReadTargets(i, g) \ DOMAIN g.resps
     THEN LET resps == g.resps @@ (m.msrc :> m.mvers)
              new == Latest(resps)
          IN [g EXCEPT !.resps = resps,
                       !.repair = (IF new # Latest(g.resps)
                                   THEN DOMAIN g.resps ELSE {})
                                  \cup (IF m.mvers # new
                                        THEN {m.msrc} ELSE {})]
     ELSE g : g \in late[i]}

LateResponse(i, m) ==
    IF \E op \in getOps[i] : op.id = m.mop
    THEN UNCHANGED late
    ELSE late' = [late EXCEPT ![i] = Unsettled(i, LateUpdated(i, m))]

\* A response to a get the spec has forgotten (its quorum came first): the
\* message is taken, late records it, and when every replica has now
\* answered, itself, with the same tombstones and nothing is left to repair,
\* the coordinator schedules their reap, as ReadRepair does when all answer
\* in time (coordinator.py _maybe_reap_after_read): an extension.
LateReadResponse(i, m) ==
    /\ Delivers(i, m, "readResp")
    /\ ~\E op \in getOps[i] : op.id = m.mop
    /\ Discard(m)
    /\ LateResponse(i, m)
    /\ reaps' =
          IF \E g \in LateUpdated(i, m) :
                LET latest == Latest(g.resps)
                IN /\ TExtensions
                   /\ Deletes
                   /\ g.id = m.mop
                   /\ m.msrc \in DOMAIN g.resps
                   /\ latest # {}
                   /\ \A u \in latest : IsTomb(u)
                   /\ DOMAIN g.stand = {}
                   /\ ReplicasOf(i, g.key) \subseteq DOMAIN g.resps
                   /\ g.repair = {}
          THEN LET g == CHOOSE g \in LateUpdated(i, m) : g.id = m.mop
               IN [reaps EXCEPT ![i] = @ \cup {[key |-> g.key, vers |-> Latest(g.resps)]}]
          ELSE reaps
    /\ UNCHANGED <<nodeVars, up, cut, clock, gets, faults, historyVars, fwds, buried, moved,
                   view>>

\* The repair a late response calls for.
LateReadRepair(c, id) ==
    /\ up[c]
    /\ ~\E op \in getOps[c] : op.id = id
    /\ \E g \in late[c] :
       LET latest == Latest(g.resps)
       IN /\ g.id = id
          /\ g.repair # {}
          /\ store' = IF c \in g.repair
                      THEN [store EXCEPT ![c][g.key] = Reconcile(@ \cup latest)]
                      ELSE store
          /\ SendAll({Msg("store", c, j, g.key, latest, 0, StandsFor(g, j)) :
                        j \in g.repair \ {c}})
          /\ late' = [late EXCEPT ![c] =
                         Unsettled(c, (@ \ {g}) \cup {[g EXCEPT !.repair = {}]})]
    /\ UNCHANGED <<hints, putOps, getOps, up, cut, clock, gets, faults,
                   historyVars, extraVars>>

\* The node's anti-entropy runs in two halves: the peer j merges the sibling
\* set the initiator i sent it, then i merges the set j sends back.  Node n
\* merges a set its partner held at some earlier line.
AntiEntropyHalf(i, j, k, n) ==
    LET o == IF n = i THEN j ELSE i
    IN /\ {i, j} \subseteq Replicas(k)
       /\ i # j
       /\ n \in {i, j}
       /\ up[n]
       /\ \E S \in past[o][k] :
             /\ S # store[n][k]
             /\ store' = [store EXCEPT ![n][k] = Reconcile(@ \cup S)]
       /\ UNCHANGED <<hints, putOps, getOps, envVars, historyVars, extraVars>>

----------------------------------------------------------------------------
\* One line of the trace as a step of the spec.

\* A put's line gives the client's context (ctxs: it, or nothing): the put's
\* writer had seen a read whose versions make that context.  The versions
\* alone do not say which read: with plain vector clocks a blind put and one
\* with a context can make the same version, and only saw, which the
\* promises judge by, tells them apart.  A context that no read answered (a
\* pruned clock, or one made up by the client) leaves the choice open.  This
\* is Dynamo's ClientPut with the read chosen among those that fit; Coordinate
\* depends on a read's versions alone, so each distinct set is tried once
\* (a long run has many reads of a key, most of them alike).
ClientPutAfter(c, k, v, ctxs) ==
    LET all == {rd.vers : rd \in Reads(k)}
        fits == {vs \in all : Context(vs) \in ctxs}
    IN /\ \E vs \in (IF fits # {} THEN fits ELSE all) :
             Coordinate(c, k, v, vs, Seen(vs))
       /\ UNCHANGED fwds

\* The spec's ReadRepair forgets the get; the node keeps it while replicas
\* have not answered.
ForgetGet(c, id) ==
    LET op == CHOOSE x \in getOps[c] : x.id = id
    IN late' = [late EXCEPT ![c] = Unsettled(c, @ \cup
                  {[id |-> id, key |-> op.key, resps |-> op.resps,
                    stand |-> op.stand, repair |-> {}]})]

Step(e) ==
    LET a == e.action
        x == e.args
    IN
    \/ /\ a = "ClientPut"
       /\ ClientPutAfter(x[1], x[2], x[3], IF Len(x) > 3 THEN {x[4]} ELSE {})
       /\ UNCHANGED late
    \/ /\ a = "ReplicaStore"
       /\ \E m \in Takes(x[1], x[2], x[3], x[4], "store") :
             m.mhint = x[5] /\ ReplicaStore(x[1], m)
       /\ UNCHANGED late
    \/ /\ a = "StoreAck"
       /\ \E m \in Takes(x[1], x[2], x[3], x[4], "storeAck") : StoreAck(x[1], m)
       /\ UNCHANGED late
    \/ /\ a = "PutTimeout"
       /\ PutTimeout(x[1], x[2])
       /\ UNCHANGED late
    \/ /\ a = "SloppyFallback"
       /\ SloppyFallback(x[1], x[2], x[3])
       /\ UNCHANGED late
    \/ /\ a = "ClientGet"
       /\ ClientGet(x[1], x[2])
       /\ UNCHANGED late
    \/ /\ a = "ReplicaRead"
       /\ \E m \in Takes(x[1], x[2], x[3], x[4], "read") : ReplicaRead(x[1], m)
       /\ UNCHANGED late
    \/ /\ a = "ReadResponse"
       /\ \E m \in Takes(x[1], x[2], x[3], x[4], "readResp") :
             IF \E op \in getOps[x[1]] : op.id = m.mop
             THEN ReadResponse(x[1], m) /\ UNCHANGED late
             ELSE LateReadResponse(x[1], m)
    \/ /\ a = "ReadRepair"
       /\ IF \E op \in getOps[x[1]] : op.id = x[2]
          THEN ReadRepair(x[1], x[2]) /\ ForgetGet(x[1], x[2])
          ELSE TExtensions /\ LateReadRepair(x[1], x[2])
    \/ /\ a = "ReapTombstone"
       /\ ReapTombstone(x[1], x[2])
       /\ UNCHANGED late
    \/ /\ a = "ReplicaReap"
       /\ \E m \in Takes(x[1], x[2], x[3], 0, "reap") : ReplicaReap(x[1], m)
       /\ UNCHANGED late
    \/ /\ a = "HandoffHint"
       /\ HandoffHint(x[1], x[2], x[3])
       /\ UNCHANGED late
    \/ /\ a = "AntiEntropy"
       /\ TExtensions
       /\ AntiEntropyHalf(x[1], x[2], x[3], x[4])
       /\ UNCHANGED late
    \/ /\ a = "GetTimeout"
       /\ TExtensions
       /\ GetTimeout(x[1], x[2])
       /\ UNCHANGED late
    \/ /\ a = "Crash"
       /\ Crash(x[1])
       /\ late' = [late EXCEPT ![x[1]] = {}]
    \/ /\ a = "Recover"
       /\ Recover(x[1])
       /\ UNCHANGED late
    \/ /\ a = "Partition"
       /\ Partition(x[1], x[2])
       /\ UNCHANGED late
    \/ /\ a = "Heal"
       /\ Heal(x[1], x[2])
       /\ UNCHANGED late
    \/ /\ a = "LoseMessage"
       /\ x[1] \in DOMAIN msgs
       /\ LoseMessage
       /\ msgs' = msgs (-) SetToBag({x[1]})
       /\ UNCHANGED late
    \/ /\ a = "DuplicateMessage"
       /\ x[1] \in DOMAIN msgs
       /\ DuplicateMessage
       /\ msgs' = msgs (+) SetToBag({x[1]})
       /\ UNCHANGED late
    \* A real run's cut began (the harness logs when): Partition as far as the
    \* promises see it, the epoch moves on; the links are not modelled, the
    \* messages a cut lost stay in flight.  Real runs only: a simulator trace
    \* records its Partition steps.
    \/ /\ a = "CutBegins"
       /\ faults' = [faults EXCEPT !.partition = @ + 1]
       /\ UNCHANGED <<nodeVars, up, msgs, cut, clock, gets, historyVars, extraVars, late>>
    \* A node-only step (gossip, Merkle exchange, forwarding, ...).
    \/ /\ a = "Stutter"
       /\ UNCHANGED <<vars, late>>

\* The keys a step changed what the promises read of.
Changed ==
    {k \in Keys : \/ \E n \in Nodes : store'[n][k] # store[n][k]
                  \/ buried'[k] # buried[k]}
    \cup (IF hints' = hints THEN {}
          ELSE {h.key : h \in UNION {(hints'[n] \ hints[n]) \cup (hints[n] \ hints'[n]) :
                                       n \in Nodes}})
    \cup (IF Cardinality(acked') = Cardinality(acked) THEN {}
          ELSE {a.key : a \in acked' \ acked})

\* What every step of a trace records beside the spec's variables.  Only the
\* sets a step changed are rebuilt: rebuilding all of past at every step
\* copied every set any node ever held, and made long runs quadratic.
Remember ==
    /\ past' = [n \in Nodes |-> [k \in Keys |->
                  IF store'[n][k] = store[n][k] THEN past[n][k]
                  ELSE past[n][k] \cup {store'[n][k]}]]
    /\ dirty' = Changed
    /\ fresh' = IF Cardinality(answered') = Cardinality(answered) THEN {}
                ELSE answered' \ answered

TraceInit ==
    /\ Init
    /\ l = 1
    /\ late = [n \in Nodes |-> {}]
    /\ past = [n \in Nodes |-> [k \in Keys |-> {store[n][k]}]]
    /\ dirty = Keys
    /\ fresh = {}
    /\ TraceLog[1].action = "Init"
    /\ IsState(TraceLog[1].state)

TraceNext ==
    /\ l < Len(TraceLog)
    /\ LET e == TraceLog[l + 1]
       IN /\ Step(e)
          /\ e.has => IsNextState(e.state)
    /\ l' = l + 1
    /\ Remember

TraceSpec == TraceInit /\ [][TraceNext]_<<vars, traceVars>>

\* Violated exactly when the whole trace has been matched.
TraceIncomplete == l < Len(TraceLog)

----------------------------------------------------------------------------
\* What clients are promised, at every line.  A run can be a behaviour of the
\* spec and still break a promise the spec's own properties state, beyond the
\* bounds the models check them in.  validate-trace lists in the cfg those the
\* run's mode keeps (dynamo_ref.tla.trace.promises), before TraceIncomplete so
\* that a last line that breaks one is reported as broken, not as accepted.
\* Checked key by key, only where the last step changed something: a state
\* whose predecessor kept a promise keeps it on every other key.  Long runs
\* have thousands of acknowledged writes, and checking them all at every step
\* made validation quadratic.
TraceSiblingsAntichain == \A k \in dirty : SiblingsAntichainAt(k)
TraceAckedWritesSurvive == \A k \in dirty : AckedWritesSurviveAt(k)
TraceCausalWritesSurvive == \A k \in dirty : CausalWritesSurviveAt(k)
TraceDeletesNotUndone == \A k \in dirty : DeletesNotUndoneAt(k)
TraceStrictQuorumRead == \A rd \in fresh : StrictQuorumReadOf(rd)

----------------------------------------------------------------------------
\* Diagnosis of a rejected trace, with TDiagnoseAt the line that failed: the
\* lines before it are matched as above, that line's action is taken without
\* its recorded state, and DiagnoseReport prints which variables then differ
\* from the recording.  Printing nothing means the action is not enabled.

Differing(s) ==
    {v \in {"store", "hints", "putOps", "getOps", "up", "msgs", "cut", "clock",
            "gets", "faults", "acked", "answered"} :
        CASE v = "store" -> store # s.store
          [] v = "hints" -> hints # s.hints
          [] v = "putOps" -> putOps # s.putOps
          [] v = "getOps" -> getOps # s.getOps
          [] v = "up" -> up # s.up
          [] v = "msgs" -> msgs # s.msgs
          [] v = "cut" -> cut # s.cut
          [] v = "clock" -> clock # s.clock
          [] v = "gets" -> gets # s.gets
          [] v = "faults" -> faults # s.faults
          [] v = "acked" -> acked # s.acked
          [] v = "answered" -> AnsweredView(answered) # s.answered}

DiagnoseNext ==
    /\ l < TDiagnoseAt
    /\ LET e == TraceLog[l + 1]
       IN /\ Step(e)
          /\ (l + 1 < TDiagnoseAt /\ e.has) => IsNextState(e.state)
    /\ l' = l + 1
    /\ Remember

\* What differs, as <<only in the spec's step, only in the recording>>.
Apart(a, b) == <<a \ b, b \ a>>

Detail(v, s) ==
    CASE v = "store" ->
            {<<n, k, Apart(store[n][k], s.store[n][k])>> :
                <<n, k>> \in {<<n, k>> \in Nodes \X Keys : store[n][k] # s.store[n][k]}}
      [] v = "hints" ->
            {<<n, Apart(hints[n], s.hints[n])>> : n \in {n \in Nodes : hints[n] # s.hints[n]}}
      [] v = "putOps" ->
            {<<n, Apart(putOps[n], s.putOps[n])>> :
                n \in {n \in Nodes : putOps[n] # s.putOps[n]}}
      [] v = "getOps" ->
            {<<n, Apart(getOps[n], s.getOps[n])>> :
                n \in {n \in Nodes : getOps[n] # s.getOps[n]}}
      [] v = "up" -> Apart({n \in Nodes : up[n]}, {n \in Nodes : s.up[n]})
      [] v = "msgs" -> Apart({<<m, msgs[m]>> : m \in DOMAIN msgs},
                             {<<m, s.msgs[m]>> : m \in DOMAIN s.msgs})
      [] v = "cut" -> Apart(cut, s.cut)
      [] v = "clock" -> <<clock, s.clock>>
      [] v = "gets" -> <<gets, s.gets>>
      [] v = "faults" -> <<faults, s.faults>>
      [] v = "acked" -> Apart(acked, s.acked)
      [] v = "answered" -> Apart(AnsweredView(answered), s.answered)

\* The enabling conditions of a line's action, named as in Dynamo.tla, each
\* with its value in the current state.
Guards(e) ==
    LET x == e.args
        a == e.action
        Msg4(type) == <<"message in flight", Takes(x[1], x[2], x[3], x[4], type) # {}>>
        Delivery(type) ==
            {Msg4(type), <<"up[i]", up[x[1]]>>, <<"Linked(src, i)", Linked(x[2], x[1])>>}
    IN CASE a = "ClientPut" ->
              {<<"up[c]", up[x[1]]>>, <<"c is a replica of k", x[1] \in Replicas(x[2])>>,
               <<"clock < MaxClock", clock < MaxClock>>}
         [] a = "ReplicaStore" -> Delivery("store")
         [] a = "StoreAck" -> Delivery("storeAck")
         [] a = "ReplicaRead" -> Delivery("read")
         [] a = "ReadResponse" -> Delivery("readResp")
         [] a = "PutTimeout" ->
              {<<"up[c]", up[x[1]]>>,
               <<"put id at c without W acks",
                 \E op \in putOps[x[1]] : op.id = x[2] /\ Cardinality(op.acks) < W>>}
         [] a = "SloppyFallback" ->
              {<<"Sloppy", Sloppy>>, <<"up[c]", up[x[1]]>>,
               <<"put id at c", \E op \in putOps[x[1]] : op.id = x[2]>>,
               <<"h a replica neither acked nor hinted",
                 \E op \in putOps[x[1]] :
                    op.id = x[2] /\ x[3] \in Replicas(op.key) \ (op.acks \cup op.hinted)>>,
               <<"a fallback not used",
                 \E op \in putOps[x[1]] :
                    /\ op.id = x[2]
                    /\ \E i \in (N + 1)..Len(Pref[op.key]) : Pref[op.key][i] \notin op.extra>>,
               <<"InFlight < MaxMsgs", InFlight < MaxMsgs>>}
         [] a = "ClientGet" ->
              {<<"up[c]", up[x[1]]>>, <<"c is a replica of k", x[1] \in Replicas(x[2])>>}
         [] a = "ReadRepair" ->
              {<<"up[c]", up[x[1]]>>,
               <<"get id at c answered, or late with a repair due",
                 \/ \E op \in getOps[x[1]] : op.id = x[2] /\ op.done
                 \/ \E g \in late[x[1]] : g.id = x[2] /\ g.repair # {}>>}
         [] a = "ReapTombstone" ->
              {<<"up[c]", up[x[1]]>>,
               <<"a reap of k due at c", \E r \in reaps[x[1]] : r.key = x[2]>>,
               <<"ReapQuiet", \E r \in reaps[x[1]] : r.key = x[2] /\ ReapQuiet(x[2], r.vers)>>}
         [] a = "ReplicaReap" ->
              {<<"message in flight", Takes(x[1], x[2], x[3], 0, "reap") # {}>>,
               <<"up[i]", up[x[1]]>>, <<"Linked(src, i)", Linked(x[2], x[1])>>}
         [] a = "HandoffHint" ->
              {<<"up[f]", up[x[1]]>>,
               <<"f holds hints for h and k",
                 \E h \in hints[x[1]] : h.owner = x[2] /\ h.key = x[3]>>,
               <<"InFlight < MaxMsgs", InFlight < MaxMsgs>>}
         [] a = "AntiEntropy" ->
              {<<"i and j are replicas of k", {x[1], x[2]} \subseteq Replicas(x[3])>>,
               <<"up[n]", up[x[4]]>>}
         [] a = "GetTimeout" ->
              {<<"up[c]", up[x[1]]>>,
               <<"get id at c unanswered",
                 \E op \in getOps[x[1]] : op.id = x[2] /\ ~op.done>>}
         [] a = "Crash" ->
              {<<"up[n]", up[x[1]]>>, <<"faults.crash < MaxCrashes", faults.crash < MaxCrashes>>}
         [] a = "Recover" -> {<<"~up[n]", ~up[x[1]]>>}
         [] a = "Partition" -> {<<"i # j", x[1] # x[2]>>, <<"Linked(i, j)", Linked(x[1], x[2])>>}
         [] a = "Heal" -> {<<"{i, j} is cut", {x[1], x[2]} \in cut>>}
         [] a \in {"LoseMessage", "DuplicateMessage"} ->
              {<<"message in flight", x[1] \in DOMAIN msgs>>}
         [] OTHER -> {}

FailingGuards(e) == {g[1] : g \in {g \in Guards(e) : ~g[2]}}

DiagnoseReport ==
    \/ l < TDiagnoseAt - 1
    \/ /\ l = TDiagnoseAt - 1
       /\ PrintT(<<"guards", l, FailingGuards(TraceLog[l + 1])>>)
    \/ /\ PrintT(<<"mismatch", l, IF TraceLog[l].has
                                  THEN Differing(TraceLog[l].state) ELSE {}>>)
       /\ TraceLog[l].has =>
             \A v \in Differing(TraceLog[l].state) :
                PrintT(<<"detail", v, Detail(v, TraceLog[l].state)>>)

=============================================================================
