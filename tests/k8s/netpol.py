"""NetworkPolicy (networking.k8s.io/v1) semantics for pods, to check flows offline; tests only.

Follows https://kubernetes.io/docs/concepts/services-networking/network-policies/ and the API
reference of NetworkPolicySpec / NetworkPolicyPeer / NetworkPolicyPort:

- "By default, pods are non-isolated; they accept traffic from any source. Pods become isolated by
  having a NetworkPolicy that selects them." A pod is isolated for a direction iff a policy of its
  namespace selects it (spec.podSelector; "An empty podSelector selects all pods in the namespace")
  and has that direction in its policyTypes: "If no policyTypes are specified on a NetworkPolicy
  then by default Ingress will always be set and Egress will be set if the NetworkPolicy has any
  egress rules."
- "Network policies do not conflict; they are additive": an isolated pod accepts what some rule of
  some policy selecting it allows. "Each rule allows traffic which matches both the from and ports
  sections"; an empty or missing ``from``/``to`` (or ``ports``) matches all sources (all ports).
- Peers: "podSelector: This selects particular Pods in the same namespace as the NetworkPolicy";
  "namespaceSelector: This selects particular namespaces for which all Pods should be allowed";
  both in one entry "selects particular Pods within particular namespaces". ipBlock names CIDRs
  ("These should be cluster-external IPs"), so it matches no pod here.
- Ports: ``port`` is "a numerical or named port on a pod" (a name is resolved against the
  destination pod's container ports), ``protocol`` defaults to TCP, ``endPort`` makes
  ``port``..``endPort`` an inclusive range.
- "For a network flow between two pods to be allowed, both the egress policy on the source pod and
  the ingress policy on the destination pod need to allow the traffic."

Not modelled: node-local traffic (always allowed), a pod reaching itself, reply traffic, ipBlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server


@dataclass(frozen=True)
class Pod:
    """A pod as the policies see it: where it runs, its labels and the ports its containers declare."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[Mapping[str, Any], ...] = ()  # container ports: {name, containerPort, protocol}


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector: matchLabels AND every matchExpression (In, NotIn, Exists, DoesNotExist); {} = all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


def policy_types(policy: Mapping[str, Any]) -> set[str]:
    """spec.policyTypes, or its default: Ingress always, Egress when spec.egress is present."""
    spec = policy["spec"]
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress", "Egress"} if "egress" in spec else {"Ingress"}


def selecting(pod: Pod, policies: Iterable[Mapping[str, Any]], direction: str) -> list[Mapping[str, Any]]:
    """The policies of ``pod``'s namespace that select it for ``direction`` ("Ingress" or "Egress")."""
    return [p for p in policies if p["metadata"]["namespace"] == pod.namespace
            and selects(p["spec"].get("podSelector"), pod.labels) and direction in policy_types(p)]


def peer_matches(peer: Mapping[str, Any], policy_namespace: str, pod: Pod,
                 namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether a NetworkPolicyPeer of a policy in ``policy_namespace`` selects ``pod``."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        ns_labels = {NAMESPACE_NAME_LABEL: pod.namespace, **namespace_labels.get(pod.namespace, {})}
        in_namespace = selects(peer["namespaceSelector"], ns_labels)
    else:
        in_namespace = pod.namespace == policy_namespace
    return in_namespace and ("podSelector" not in peer or selects(peer["podSelector"], pod.labels))


def port_matches(entry: Mapping[str, Any], port: int, protocol: str, server: Pod) -> bool:
    """Whether a NetworkPolicyPort admits ``protocol``/``port`` on ``server`` (named ports: its containers')."""
    if entry.get("protocol", "TCP") != protocol:
        return False
    want = entry.get("port")
    if want is None:
        return True
    if isinstance(want, str):
        return any(p.get("name") == want and p["containerPort"] == port and p.get("protocol", "TCP") == protocol
                   for p in server.ports)
    return want <= port <= entry.get("endPort", want)


def _admits(policy: Mapping[str, Any], direction: str, peer_pod: Pod, port: int, protocol: str, server: Pod,
            namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for rule in policy["spec"].get(rules_key) or []:
        peers = rule.get(peers_key) or []
        ports = rule.get("ports") or []
        if peers and not any(peer_matches(p, policy["metadata"]["namespace"], peer_pod, namespace_labels)
                             for p in peers):
            continue
        if ports and not any(port_matches(e, port, protocol, server) for e in ports):
            continue
        return True
    return False


def allowed(client: Pod, server: Pod, port: int, policies: Iterable[Mapping[str, Any]], protocol: str = "TCP",
            namespace_labels: Mapping[str, Mapping[str, str]] | None = None) -> bool:
    """Whether ``client`` may open a connection to ``server`` on ``protocol``/``port``.

    Args:
        policies: NetworkPolicy objects of every namespace, each with ``metadata.namespace``.
        namespace_labels: labels of the namespaces beyond ``kubernetes.io/metadata.name``.
    """
    policies, ns = list(policies), namespace_labels or {}
    egress = selecting(client, policies, "Egress")
    if egress and not any(_admits(p, "Egress", server, port, protocol, server, ns) for p in egress):
        return False
    ingress = selecting(server, policies, "Ingress")
    return not ingress or any(_admits(p, "Ingress", client, port, protocol, server, ns) for p in ingress)
