------------------------ MODULE DynamoProcessTrace ------------------------
(***************************************************************************)
(* Trace validation of real runs, from per-process traces: each node logs *)
(* only its own steps and its own variables, and dynamo_ref.tla.merge     *)
(* orders the steps by happens-before.  A line here is one action of one  *)
(* node; with has = TRUE it carries that node's variables after the step, *)
(* and only those the step touched: the keys it wrote, the hints of the   *)
(* (owner, key) pairs it changed, the requests it touched and those it    *)
(* finished.  Everything else, the messages in flight included, is the    *)
(* spec's to choose: TLC looks for a behaviour of Dynamo that takes every *)
(* line and agrees with every node's own account (the approach of the TLA+*)
(* trace validation of etcd's raft and of CCF).                           *)
(*                                                                         *)
(* A restart is a Crash and a Recover just before the node's first step   *)
(* after it.  Cut links are not lines: a cut only delays or loses         *)
(* messages, and the spec may leave any message in flight for ever.       *)
(***************************************************************************)
EXTENDS DynamoTrace, TLC

\* A node's own variables after its step, as far as its line tells them.
IsLocalNext(s) ==
    LET n == s.node
    IN /\ \A k \in DOMAIN s.store : store'[n][k] = s.store[k]
       /\ \A p \in DOMAIN s.hints :
             {h \in hints'[n] : h.owner = p[1] /\ h.key = p[2]} = s.hints[p]
       /\ \A op \in s.putOps : op \in putOps'[n]
       /\ \A id \in s.putsDone : ~\E op \in putOps'[n] : op.id = id
       \* A get's after counts acknowledgements no process sees: not compared.
       /\ \A g \in s.getOps :
             \E h \in getOps'[n] :
                /\ h.id = g.id
                /\ h.key = g.key
                /\ h.resps = g.resps
                /\ h.stand = g.stand
                /\ h.done = g.done
       /\ \A id \in s.getsDone : ~\E g \in getOps'[n] : g.id = id

ProcessInit ==
    /\ Init
    /\ l = 1
    /\ late = [n \in Nodes |-> {}]
    /\ past = [n \in Nodes |-> [k \in Keys |-> {store[n][k]}]]
    /\ dirty = Keys
    /\ fresh = {}
    /\ TraceLog[1].action = "Init"

ProcessNext ==
    /\ l < Len(TraceLog)
    /\ LET e == TraceLog[l + 1]
       IN /\ Step(e)
          /\ e.has => IsLocalNext(e.state)
    /\ l' = l + 1
    /\ Remember

\* Violated exactly when the whole run has been matched.
ProcessIncomplete == l < Len(TraceLog)

\* Holds in every state, and says so once a state has matched the whole run.  Acceptance
\* as a violation of ProcessIncomplete makes TLC print the whole behaviour, every
\* variable of every state: gigabytes for a long run.  With this invariant instead the
\* search ends by itself (nothing follows the last line) and prints one line.
ACCEPTED == "dynamo-run-accepted"
ProcessAccepted == l = Len(TraceLog) => PrintT(ACCEPTED)

\* What TLC tells states apart by (the cfg's VIEW): the line, and the
\* variables that say what may happen next.  Left out are saw and past,
\* which only grow (saw by every put a writer had seen, past by every
\* sibling set a node held), and acked, answered and stored, the history of
\* what clients were told, which grows with every request.  Fingerprinting
\* them in every state made long runs quadratic.  The last three are the
\* same in every state at a line: each is set by a step whose line names
\* the put or get and whose node logs what it wrote or answered.  States
\* alike in all else are one state to TLC, the first found standing for the
\* others.  That cannot accept a run that is no behaviour of Dynamo (every
\* state TLC explores is one), but it may judge CausalWritesSurvive, which
\* reads saw, on one of several explanations of a put's context, and miss a
\* set an AntiEntropy half merges that only the other state's past holds:
\* a rejection a full search would not make.
ProcessView == <<l, late, nodeVars, envVars, extraVars>>

----------------------------------------------------------------------------
\* Diagnosis of a rejected run, with TDiagnoseAt the line that failed: the
\* lines before it are matched as above, that line's action is taken without
\* the node's account of its variables, and ProcessDiagnoseReport prints
\* which of them the spec's step leaves otherwise.  Printing no mismatch
\* means the action is not enabled; then the guards that fail are printed.

\* The node's variables the spec's step (just taken) leaves otherwise than
\* the line s says.
LocalDiffering(s) ==
    LET n == s.node
    IN {v \in {"store", "hints", "putOps", "putsDone", "getOps", "getsDone"} :
          CASE v = "store" -> \E k \in DOMAIN s.store : store[n][k] # s.store[k]
            [] v = "hints" ->
                 \E p \in DOMAIN s.hints :
                    {h \in hints[n] : h.owner = p[1] /\ h.key = p[2]} # s.hints[p]
            [] v = "putOps" -> ~(s.putOps \subseteq putOps[n])
            [] v = "putsDone" -> \E id \in s.putsDone : \E op \in putOps[n] : op.id = id
            [] v = "getOps" ->
                 \E g \in s.getOps :
                    ~\E h \in getOps[n] :
                       /\ h.id = g.id /\ h.key = g.key /\ h.resps = g.resps
                       /\ h.stand = g.stand /\ h.done = g.done
            [] v = "getsDone" -> \E id \in s.getsDone : \E g \in getOps[n] : g.id = id}

\* What differs, as <<the spec's, the node's>>.
LocalDetail(v, s) ==
    LET n == s.node
    IN CASE v = "store" ->
              {<<k, Apart(store[n][k], s.store[k])>> :
                  k \in {k \in DOMAIN s.store : store[n][k] # s.store[k]}}
         [] v = "hints" ->
              {<<p, Apart({h \in hints[n] : h.owner = p[1] /\ h.key = p[2]}, s.hints[p])>> :
                  p \in DOMAIN s.hints}
         [] v = "putOps" ->
              <<{op \in putOps[n] : \E o \in s.putOps : o.id = op.id}, s.putOps \ putOps[n]>>
         [] v = "putsDone" -> <<{op \in putOps[n] : op.id \in s.putsDone}, s.putsDone>>
         [] v = "getOps" ->
              <<{g \in getOps[n] : \E o \in s.getOps : o.id = g.id}, s.getOps>>
         [] v = "getsDone" -> <<{g \in getOps[n] : g.id \in s.getsDone}, s.getsDone>>

ProcessDiagnoseNext ==
    /\ l < TDiagnoseAt
    /\ LET e == TraceLog[l + 1]
       IN /\ Step(e)
          /\ (l + 1 < TDiagnoseAt /\ e.has) => IsLocalNext(e.state)
    /\ l' = l + 1
    /\ Remember

ProcessDiagnoseReport ==
    \/ l < TDiagnoseAt - 1
    \/ /\ l = TDiagnoseAt - 1
       /\ PrintT(<<"guards", l, FailingGuards(TraceLog[l + 1])>>)
    \/ /\ PrintT(<<"mismatch", l, IF TraceLog[l].has
                                  THEN LocalDiffering(TraceLog[l].state) ELSE {}>>)
       /\ TraceLog[l].has =>
             \A v \in LocalDiffering(TraceLog[l].state) :
                PrintT(<<"detail", v, LocalDetail(v, TraceLog[l].state)>>)

=============================================================================
