------------------------------ MODULE DynamoKV ------------------------------
(***************************************************************************)
(* What a Dynamo store promises its clients, with no nodes, messages or   *)
(* clocks: the client-visible specification Dynamo.tla refines (checked  *)
(* by TLC through the mapping in DynamoRefinesKV.tla).                    *)
(*                                                                         *)
(* A write is a version of a key, named by its put id (ts).  saw[t] is    *)
(* the causal past of write t as the clients' contexts give it: the       *)
(* writes its client had read, and what those had seen.  live[k] is every *)
(* write of k the store still holds anywhere (in a store, a hint, a       *)
(* message or a request in progress); buried[k] the tombstones reaped.    *)
(*                                                                         *)
(* The promises, in the style of the client-centric specifications of    *)
(* geo-replicated stores:                                                 *)
(*  - a write leaves the store only when a live write whose client had   *)
(*    seen it remains (it was overwritten, not lost), or when it is a     *)
(*    tombstone reaped after everything it deleted is gone;               *)
(*  - a write, once gone, never comes back (no resurrection);             *)
(*  - a get returns writes the store holds, and with a strict quorum a    *)
(*    get that began after an ack, with no fault between, returns that   *)
(*    write or one whose client had seen it.                              *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets

CONSTANTS Keys, Tomb, MaxId

\* Whether gets promise to see acknowledged writes (R + W > N, strict), and
\* in which epochs (between faults, with the nodes agreeing on the ring).
CONSTANTS StrictReads, Promised(_)

VARIABLES live, buried, born, saw, acked, answered

kvVars == <<live, buried, born, saw, acked, answered>>

Ids == 1..MaxId

KVInit ==
    /\ live = [k \in Keys |-> {}]
    /\ buried = [k \in Keys |-> {}]
    /\ born = 0
    /\ saw = [t \in Ids |-> {}]
    /\ acked = {}
    /\ answered = {}

\* Write u's client had seen write v.
Saw(u, v) == v.ts \in saw[u.ts]

\* One step of the store: any number of new writes, drops, acks and answers
\* at once (a step of Dynamo may store a new write and, on the same replica,
\* drop the last copy of the one it overwrites).
KVNext ==
    /\ born' >= born
    /\ \A t \in 1..born : saw'[t] = saw[t]
    /\ \A t \in (born + 1)..born' : saw'[t] \subseteq 1..born
    /\ \A k \in Keys :
          \* New writes only: what has left the store never comes back.
          /\ \A v \in live'[k] \ live[k] : born < v.ts /\ v.ts <= born'
          \* A write leaves as overwritten by one that saw it, or as a reaped
          \* tombstone that leaves nothing it deleted behind.
          /\ \A v \in live[k] \ live'[k] :
                \/ \E u \in live'[k] : v.ts \in saw'[u.ts]
                \/ /\ v.val = Tomb
                   /\ v \in buried'[k]
                   /\ \A u \in live'[k] : u.ts \notin saw'[v.ts]
          /\ buried[k] \subseteq buried'[k]
          /\ \A v \in buried'[k] \ buried[k] : v \in live[k] /\ v.val = Tomb
    /\ acked \subseteq acked'
    /\ answered \subseteq answered'
    /\ \A rd \in answered' \ answered :
          /\ rd.vers \subseteq live[rd.key] \cup live'[rd.key]
          /\ StrictReads =>
                \A a \in acked' :
                   (/\ a.key = rd.key /\ a.seq <= rd.after
                    /\ a.epoch = rd.epoch /\ Promised(a.epoch))
                   => \E u \in rd.vers : u = a.ver \/ Saw(u, a.ver)

KVSpec == KVInit /\ [][KVNext]_kvVars

\* Implied by KVSpec (saw is transitive): every acknowledged write is live,
\* or seen by a live write, or deleted by a reaped tombstone.
KVAckedWritesSurvive ==
    \A a \in acked :
        \E u \in live[a.key] \cup buried[a.key] : u = a.ver \/ Saw(u, a.ver)

=============================================================================
