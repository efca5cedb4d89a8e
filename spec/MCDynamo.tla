------------------------------ MODULE MCDynamo ------------------------------
(***************************************************************************)
(* Concrete rings for the TLC models in models/*.cfg, which cannot write   *)
(* tuples or functions themselves.                                         *)
(***************************************************************************)
EXTENDS Dynamo

\* Model values for the nodes and keys, assigned in each cfg.
CONSTANTS n1, n2, n3, n4, k1, k2

\* One key on a ring of two nodes.
Ring2 == [k \in Keys |-> <<n1, n2>>]

\* One key on a ring of three nodes.
Ring3 == [k \in Keys |-> <<n1, n2, n3>>]

\* Ring3 after n3 joined in front of n1: the replicas of every key go from
\* n1 n2 to n3 n1, and n2 hands its versions to n3.
Ring3Joined == [k \in Keys |-> <<n3, n1, n2>>]

\* Two keys on a ring of four nodes, each starting at a different node.
Ring4 == [k \in Keys |-> IF k = k1 THEN <<n1, n2, n3, n4>>
                                   ELSE <<n3, n4, n1, n2>>]

\* Two keys on four nodes, n4 last everywhere (no key's replica: it has not
\* joined), and the ring after n4 joined: it takes a replica's place of each.
RingPreJoin4 == [k \in Keys |-> IF k = k1 THEN <<n1, n2, n3, n4>>
                                          ELSE <<n2, n3, n1, n4>>]
RingJoined4 == [k \in Keys |-> IF k = k1 THEN <<n4, n1, n2, n3>>
                                         ELSE <<n2, n4, n3, n1>>]

\* Values are only compared for equality, so any permutation of them maps a
\* behaviour to another one with the same verdicts.
ValueSymmetry == Permutations(Values)

\* In Ring2 and Ring3 with N = 2, n1 and n2 are the two replicas of every
\* key.  The spec never looks at the order of the replicas within the first
\* N of a preference list, only at the set and at the fallbacks after it, so
\* swapping n1 and n2 is a symmetry too.
ReplicaSymmetry == Permutations(Values) \cup Permutations({n1, n2})

\* In Ring2 both keys have the same preference list: keys are interchangeable
\* as well.
ReplicaKeySymmetry == ReplicaSymmetry \cup Permutations(Keys)

\* With N equal to the number of nodes every node is a replica of every key
\* and there are no fallbacks: all nodes are interchangeable.
NodeSymmetry == Permutations(Values) \cup Permutations(Nodes)

=============================================================================
