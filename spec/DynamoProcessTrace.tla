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
    /\ TraceLog[1].action = "Init"

ProcessNext ==
    /\ l < Len(TraceLog)
    /\ LET e == TraceLog[l + 1]
       IN /\ Step(e)
          /\ e.has => IsLocalNext(e.state)
    /\ l' = l + 1
    /\ RecordPast

\* Violated exactly when the whole run has been matched.
ProcessIncomplete == l < Len(TraceLog)

\* Holds in every state, and says so once a state has matched the whole run.  Acceptance
\* as a violation of ProcessIncomplete makes TLC print the whole behaviour, every
\* variable of every state: gigabytes for a long run.  With this invariant instead the
\* search ends by itself (nothing follows the last line) and prints one line.
ACCEPTED == "dynamo-run-accepted"
ProcessAccepted == l = Len(TraceLog) => PrintT(ACCEPTED)

=============================================================================
