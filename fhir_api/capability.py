"""What the facade supports, said once: the CapabilityStatement (`/fhir/r4/metadata`) and
the SMART configuration (`.well-known/smart-configuration`) are built from it."""

from __future__ import annotations

from typing import Any

from . import scopes

SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
TOPIC_CANONICAL = f"{BACKPORT}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"

RESOURCES: dict[str, dict[str, Any]] = {
    "Appointment": {
        # vread: the current version only (readHistory false); no history interaction.
        "interactions": ["read", "vread", "create", "update", "search-type"],
        "conditionalCreate": True,
        "params": {
            "_id": "token",
            "date": "date",
            "patient": "reference",
            "practitioner": "reference",
            "status": "token",
            "_lastUpdated": "date",
            "identifier": "token",
        },
    },
    "Patient": {
        "interactions": ["read", "create", "update", "search-type"],
        "conditionalCreate": True,
        "params": {
            "_id": "token",
            "identifier": "token",
            "name": "string",
            "email": "token",
            "_lastUpdated": "date",
        },
    },
    "Practitioner": {
        # create: only for a client a clinic admin registered (system/Practitioner.c).
        "interactions": ["read", "create", "search-type"],
        "conditionalCreate": True,
        "params": {"_id": "token", "identifier": "token", "name": "string", "email": "token"},
    },
    "Schedule": {
        "interactions": ["read", "search-type"],
        "conditionalCreate": False,
        "params": {"_id": "token", "actor": "reference"},
    },
    # Free/busy derived from appointments: search only (schedule, start ge/lt, status).
    "Slot": {
        "interactions": ["search-type"],
        "conditionalCreate": False,
        "params": {"schedule": "reference", "start": "date", "status": "token"},
    },
    # Topic-based subscriptions (the R4B backport): rest-hook, handshake, heartbeat, $status.
    "Subscription": {
        "interactions": ["read", "create", "update", "delete", "search-type"],
        "conditionalCreate": False,
        "params": {"_id": "token", "status": "token"},
        "operations": [("status", f"{BACKPORT}/OperationDefinition/backport-subscription-status")],
        "profile": f"{BACKPORT}/StructureDefinition/backport-subscription",
    },
    # Our one topic, readable without a token.
    "SubscriptionTopic": {
        "interactions": ["read", "search-type"],
        "conditionalCreate": False,
        "params": {"url": "uri", "_id": "token"},
        "paging": False,
    },
}


# What an interaction does not do that a client might expect.
INTERACTION_NOTES = {
    ("Appointment", "vread"): "The current version only: earlier versions are not kept "
    "(readHistory false); an older versionId is 404.",
    ("Appointment", "update"): "Reschedule, change people, reason and notes, or cancel "
    "(status cancelled); other statuses follow the call. If-Match optional (412 on conflict).",
    ("Patient", "update"): "Name, email and phone as sent; language when it maps to a "
    "supported one. If-Match optional (412 on conflict).",
    ("Subscription", "update"): "What the EHR sets (endpoint, headers, payload, filter, "
    "heartbeat, end; status requested, active or off). If-Match optional (412 on conflict).",
    ("Practitioner", "create"): "Only for a client registered by an admin of its clinic "
    "(scope system/Practitioner.c): a clinician without a password.",
}


def capability_statement(*, base_url: str, token_url: str, topic_url: str) -> dict[str, Any]:
    resources = []
    for kind, spec in RESOURCES.items():
        extra: dict[str, Any] = {}
        if "operations" in spec:
            extra["operation"] = [
                {"name": name, "definition": url} for name, url in spec["operations"]
            ]
        if "profile" in spec:
            extra["supportedProfile"] = [spec["profile"]]
        if kind == "Subscription":
            extra["extension"] = [{"url": TOPIC_CANONICAL, "valueCanonical": topic_url}]
        resources.append(
            {
                **extra,
                "type": kind,
                "interaction": [
                    {"code": code, "documentation": INTERACTION_NOTES[(kind, code)]}
                    if (kind, code) in INTERACTION_NOTES
                    else {"code": code}
                    for code in spec["interactions"]
                ],
                # meta.versionId (and ETag / If-Match) on what can be updated: Appointment,
                # Patient and Subscription (`services.version_check`).
                "versioning": "versioned-update"
                if "update" in spec["interactions"]
                else "no-version",
                "readHistory": False,
                "updateCreate": False,
                "conditionalCreate": spec["conditionalCreate"],
                "conditionalUpdate": False,
                "conditionalDelete": "not-supported",
                "searchParam": [{"name": n, "type": t} for n, t in spec["params"].items()]
                + (
                    [
                        {"name": "_count", "type": "number"},
                        {"name": "_summary", "type": "token"},
                    ]
                    if spec.get("paging", True)
                    else []
                ),
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-07",
        "kind": "instance",
        "software": {"name": "appointment-calls"},
        "implementation": {"description": "Video appointments (FHIR R4 facade)", "url": base_url},
        "instantiates": [f"{BACKPORT}/CapabilityStatement/backport-subscription-server"],
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "SMART Backend Services: client_credentials with a "
                    "private_key_jwt assertion (RS384 or ES384), system scopes.",
                    "extension": [
                        {
                            "url": SMART_OAUTH_URIS,
                            "extension": [{"url": "token", "valueUri": token_url}],
                        }
                    ],
                },
                "resource": resources,
            }
        ],
    }


def smart_configuration(*, token_url: str) -> dict[str, Any]:
    return {
        "token_endpoint": token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": scopes.supported(),
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }
