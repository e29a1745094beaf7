"""factory-boy factories shared by the tests."""

from __future__ import annotations

import factory

from calls.models import Call, CallMember, CallType, CallUser


class CallUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CallUser
        django_get_or_create = ("id",)

    id = factory.Sequence(lambda n: f"user-{n}")
    name = factory.LazyAttribute(lambda o: o.id.replace("-", " ").title())
    role = "user"

    teams = factory.LazyFunction(list)


class CallFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Call

    type = factory.LazyFunction(lambda: CallType.objects.get(name="default"))
    call_id = factory.Sequence(lambda n: f"call-{n}")
    cid = factory.LazyAttribute(lambda o: f"{o.type.name}:{o.call_id}")
    created_by = factory.SubFactory(CallUserFactory)
    team = None

    class Params:
        live = factory.Trait(backstage=False)
        in_backstage = factory.Trait(backstage=True)


class CallMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CallMember

    call = factory.SubFactory(CallFactory)
    user = factory.SubFactory(CallUserFactory)
    role = "call_member"
