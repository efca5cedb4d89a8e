-------------------------- MODULE DynamoRefinesKV --------------------------
(***************************************************************************)
(* Dynamo.tla refines DynamoKV.tla: the refinement mapping.  The abstract *)
(* store holds every version the system still has anywhere: stores and    *)
(* hints (Present), messages in flight that store what they carry, and    *)
(* the requests in progress (puts, get responses).  A client's read or    *)
(* context is not the store's: only the clocks of a context are written.  *)
(*                                                                         *)
(* The models check KVRefinementInit and KVRefinement (KV!KVSpec): it    *)
(* holds with dotted version vectors, and fails with plain vector clocks  *)
(* (a write is dropped for a version whose client never saw it) and with  *)
(* last-writer-wins.                                                      *)
(***************************************************************************)
EXTENDS MCDynamo

\* Every copy of a version of k the system holds and may store again: in
\* stores and hints, in messages that store what they carry (a store, a read
\* response that read repair may write back, a transfer), in puts in
\* progress and in gets' responses.  Acks and reaps only name versions.
Held(k) ==
    Present(k)
    \cup UNION {m.mvers : m \in {m \in DOMAIN msgs :
                                   m.mkey = k /\ m.mtype \in {"store", "readResp", "transfer"}}}
    \cup {op.ver : op \in {op \in UNION {putOps[n] : n \in Nodes} : op.key = k}}
    \cup UNION {UNION {op.resps[x] : x \in DOMAIN op.resps} :
                  op \in {op \in UNION {getOps[n] : n \in Nodes} : op.key = k}}

KV == INSTANCE DynamoKV
        WITH live <- [k \in Keys |-> Held(k)],
             born <- clock,
             MaxId <- MaxClock,
             StrictReads <- (~Sloppy /\ R + W > N),
             Promised <- Settled

\* KV!KVSpec, in its two parts: TLC names an action property in its reports
\* when it is one definition of the form [][A]_v.  [UNCHANGED v \/ A]_v is
\* [A]_v; written so, TLC skips KVNext on the steps that leave kvVars alone.
KVRefinementInit == KV!KVInit

KVRefinement == [][UNCHANGED KV!kvVars \/ KV!KVNext]_(KV!kvVars)

KVAckedWritesSurvive == KV!KVAckedWritesSurvive

=============================================================================
