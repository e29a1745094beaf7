#!/usr/bin/env python
"""The join pages' JavaScript texts in every language: the `djangojs` catalogue
(locale/<lang>/LC_MESSAGES/djangojs.po and .mo), which Django's JavaScript catalog serves
to the scripts (/jsi18n/<lang>/, appointments.join.views.PageCatalog).

    .venv/bin/python bin/js_messages.py

1. extracts the texts the scripts mark (gettext, ngettext, pgettext) with `manage.py
   makemessages -d djangojs` (GNU gettext's xgettext), ignoring IGNORE;
2. writes each language's translation from TRANSLATIONS below (this file is where the JS
   texts are translated: a text with no translation here stops the script);
3. compiles the .mo files (msgfmt --check), which are committed: the README's commands need
   no gettext tools.

tests/appointments/test_js_catalogues.py fails when a catalogue is incomplete or stale, when
placeholders differ, or when a script marks a text the catalogue lacks. Plural texts have one
form per the language's Plural-Forms (Arabic: six). Formal register throughout (vous, usted,
Sie, a forma de cortesia, Modern Standard Arabic); Portuguese is European Portuguese (Django's
`pt`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import chdir
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
DOMAIN = "djangojs"
LANGUAGES = ["fr", "es", "de", "pt", "ar"]
# Not the app's scripts: the virtualenv, tests and benchmarks, collected static files, npm's.
IGNORE = [".venv", "tests", "bench", "staticfiles", "node_modules"]
PLURAL_FORMS = {
    "fr": "nplurals=2; plural=(n > 1);",
    "es": "nplurals=2; plural=(n != 1);",
    "de": "nplurals=2; plural=(n != 1);",
    "pt": "nplurals=2; plural=(n != 1);",
    "ar": (
        "nplurals=6; plural=n==0 ? 0 : n==1 ? 1 : n==2 ? 2 : n%100>=3 && n%100<=10 ? 3 : "
        "n%100>=11 ? 4 : 5;"
    ),
}
LANGUAGE_NAMES = {
    "fr": "French",
    "es": "Spanish",
    "de": "German",
    "pt": "Portuguese",
    "ar": "Arabic",
}

Key = str | tuple[str, str]  # msgid, or (msgctxt, msgid)
TRANSLATIONS: dict[Key, dict[str, str | list[str]]] = {}
PLURALS: dict[Key, str] = {}


def t(msgid: Key, *, plural: str = "", **by_language: str | list[str]) -> None:
    """One text's translations. French gets its non-breaking spaces (before : ; ? ! », after
    «) from `french_spacing`; plural texts give a list of forms per language."""
    if set(by_language) != set(LANGUAGES):
        raise SystemExit(f"{msgid!r}: translations for {sorted(by_language)}, not {LANGUAGES}")
    TRANSLATIONS[msgid] = by_language
    if plural:
        PLURALS[msgid] = plural


def french_spacing(text: str) -> str:
    for mark in (":", ";", "?", "!", "»"):
        text = text.replace(" " + mark, "\u00a0" + mark)
    return text.replace("« ", "«\u00a0")


def ar6(*, few: str, other: str) -> list[str]:
    """Arabic's six plural forms (zero, one, two, few, many, other) for a text that keeps its
    number in every form: 3 to 10 take the plural noun (`few`), the others the singular."""
    return [other, other, other, few, other, other]


# --- chat.js ------------------------------------------------------------------------------

t(
    "Chat (%(n)s new message)",
    plural="Chat (%(n)s new messages)",
    fr=["Discussion (%(n)s nouveau message)", "Discussion (%(n)s nouveaux messages)"],
    es=["Chat (%(n)s mensaje nuevo)", "Chat (%(n)s mensajes nuevos)"],
    de=["Chat (%(n)s neue Nachricht)", "Chat (%(n)s neue Nachrichten)"],
    pt=["Chat (%(n)s mensagem nova)", "Chat (%(n)s mensagens novas)"],
    ar=ar6(few="الدردشة (%(n)s رسائل جديدة)", other="الدردشة (%(n)s رسالة جديدة)"),
)
t("Chat", fr="Discussion", es="Chat", de="Chat", pt="Chat", ar="الدردشة")
t("You", fr="Vous", es="Usted", de="Sie", pt="Você", ar="أنت")
t("Someone", fr="Quelqu’un", es="Alguien", de="Jemand", pt="Alguém", ar="شخص ما")

# --- lobby.js: the waiting room -----------------------------------------------------------

t(
    "Message from the clinic: %(message)s",
    fr="Message de la clinique : %(message)s",
    es="Mensaje de la clínica: %(message)s",
    de="Nachricht der Praxis: %(message)s",
    pt="Mensagem da clínica: %(message)s",
    ar="رسالة من العيادة: %(message)s",
)
t(
    "Waiting since %(time)s",
    fr="En attente depuis %(time)s",
    es="Esperando desde las %(time)s",
    de="Wartet seit %(time)s Uhr",
    pt="À espera desde as %(time)s",
    ar="في الانتظار منذ الساعة %(time)s",
)
t(
    "Your clinician knows you are here and will let you in shortly.",
    fr="Votre praticien sait que vous êtes là et va vous faire entrer dans un instant.",
    es="Su profesional sanitario sabe que está aquí y le dará paso en breve.",
    de="Ihre Ärztin oder Ihr Arzt weiß, dass Sie da sind, und lässt Sie gleich eintreten.",
    pt="O seu profissional de saúde sabe que está aqui e vai dar-lhe acesso em breve.",
    ar="يعلم طبيبك بوجودك وسيسمح لك بالدخول قريبًا.",
)
_late = {
    "fr": "Retard de %(minutes)s min. Votre praticien vous recevra dès que possible : "
    "merci de garder cette page ouverte.",
    "es": "Hay un retraso de %(minutes)s min. Su profesional sanitario le atenderá lo antes "
    "posible: mantenga esta página abierta, por favor.",
    "de": "Verspätung: %(minutes)s Min. Ihre Ärztin oder Ihr Arzt ist so bald wie möglich für "
    "Sie da. Bitte lassen Sie diese Seite geöffnet.",
    "pt": "Atraso de %(minutes)s min. O seu profissional de saúde estará consigo logo que "
    "possível: mantenha esta página aberta, por favor.",
}
t(
    "Running late — %(minutes)s min. Your clinician will be with you as soon as possible: "
    "please keep this page open.",
    plural="Running late — %(minutes)s min. Your clinician will be with you as soon as "
    "possible: please keep this page open.",
    **{lang: [text, text] for lang, text in _late.items()},
    ar=ar6(
        few="تأخير %(minutes)s دقائق. سيكون طبيبك معك في أقرب وقت ممكن: "
        "يُرجى إبقاء هذه الصفحة مفتوحة.",
        other="تأخير %(minutes)s دقيقة. سيكون طبيبك معك في أقرب وقت ممكن: "
        "يُرجى إبقاء هذه الصفحة مفتوحة.",
    ),
)
t(
    "Your clinician will be with you shortly. Please keep this page open.",
    fr="Votre praticien va vous recevoir dans quelques instants. Merci de garder cette page "
    "ouverte.",
    es="Su profesional sanitario le atenderá en breve. Mantenga esta página abierta, por favor.",
    de="Ihre Ärztin oder Ihr Arzt ist gleich für Sie da. Bitte lassen Sie diese Seite geöffnet.",
    pt="O seu profissional de saúde estará consigo em breve. Mantenha esta página aberta, por "
    "favor.",
    ar="سيكون طبيبك معك قريبًا. يُرجى إبقاء هذه الصفحة مفتوحة.",
)
t("Admit", fr="Faire entrer", es="Admitir", de="Einlassen", pt="Admitir", ar="السماح بالدخول")
t(
    "Admit %(name)s",
    fr="Faire entrer %(name)s",
    es="Admitir a %(name)s",
    de="%(name)s einlassen",
    pt="Admitir %(name)s",
    ar="السماح بدخول %(name)s",
)

# --- notify.js: the title of a push that has none (the service worker's) -------------------

t(
    "Video appointment",
    fr="Consultation vidéo",
    es="Cita por videollamada",
    de="Videosprechstunde",
    pt="Consulta por vídeo",
    ar="موعد عبر الفيديو",
)

# --- room.js: the chat's messages ---------------------------------------------------------

t(
    "The message was not sent: the connection is not back yet.",
    fr="Le message n’a pas été envoyé : la connexion n’est pas encore rétablie.",
    es="El mensaje no se ha enviado: la conexión aún no se ha restablecido.",
    de="Die Nachricht wurde nicht gesendet: Die Verbindung ist noch nicht wiederhergestellt.",
    pt="A mensagem não foi enviada: a ligação ainda não foi restabelecida.",
    ar="لم تُرسَل الرسالة: لم يُستعَد الاتصال بعد.",
)
t(
    "New message from %(name)s.",
    fr="Nouveau message de %(name)s.",
    es="Nuevo mensaje de %(name)s.",
    de="Neue Nachricht von %(name)s.",
    pt="Nova mensagem de %(name)s.",
    ar="رسالة جديدة من %(name)s.",
)

# --- room.js: before joining --------------------------------------------------------------

t(
    "Enter backstage",
    fr="Entrer en coulisses",
    es="Entrar entre bastidores",
    de="Vorbereitungsraum betreten",
    pt="Entrar nos bastidores",
    ar="الدخول إلى الكواليس",
)
t(
    "Join the call",
    fr="Rejoindre l’appel",
    es="Unirse a la llamada",
    de="Dem Gespräch beitreten",
    pt="Entrar na chamada",
    ar="الانضمام إلى المكالمة",
)
t(
    "Enter the waiting room",
    fr="Entrer dans la salle d’attente",
    es="Entrar en la sala de espera",
    de="Wartezimmer betreten",
    pt="Entrar na sala de espera",
    ar="الدخول إلى غرفة الانتظار",
)
t(
    "The clinician is getting ready. You will be let in automatically: keep this page open.",
    fr="Votre praticien se prépare. Vous entrerez automatiquement : gardez cette page ouverte.",
    es="El profesional sanitario se está preparando. Entrará automáticamente: mantenga esta "
    "página abierta.",
    de="Ihre Ärztin oder Ihr Arzt bereitet sich vor. Sie werden automatisch eingelassen: Bitte "
    "lassen Sie diese Seite geöffnet.",
    pt="O profissional de saúde está a preparar-se. Entrará automaticamente: mantenha esta "
    "página aberta.",
    ar="يستعد الطبيب الآن. سيتم إدخالك تلقائيًا: يُرجى إبقاء هذه الصفحة مفتوحة.",
)
t(
    "The clinician is running late. Please stay on this page: you will be let in as soon as the "
    "call starts.",
    fr="Votre praticien a du retard. Merci de rester sur cette page : vous entrerez dès que "
    "l’appel commencera.",
    es="El profesional sanitario se está retrasando. Permanezca en esta página, por favor: "
    "entrará en cuanto empiece la llamada.",
    de="Ihre Ärztin oder Ihr Arzt verspätet sich. Bitte bleiben Sie auf dieser Seite: Sie "
    "werden eingelassen, sobald das Gespräch beginnt.",
    pt="O profissional de saúde está atrasado. Permaneça nesta página, por favor: entrará assim "
    "que a chamada começar.",
    ar="الطبيب متأخر قليلًا. يُرجى البقاء على هذه الصفحة: سيتم إدخالك فور بدء المكالمة.",
)
t(
    "You are in the waiting room. Your appointment starts at %(time)s: you will be let in "
    "automatically when the clinician starts the call.",
    fr="Vous êtes dans la salle d’attente. Votre rendez-vous commence à %(time)s : vous "
    "entrerez automatiquement quand votre praticien lancera l’appel.",
    es="Está en la sala de espera. Su cita empieza a las %(time)s: entrará automáticamente "
    "cuando el profesional sanitario inicie la llamada.",
    de="Sie sind im Wartezimmer. Ihr Termin beginnt um %(time)s Uhr: Sie werden automatisch "
    "eingelassen, sobald Ihre Ärztin oder Ihr Arzt das Gespräch beginnt.",
    pt="Está na sala de espera. A sua consulta começa às %(time)s: entrará automaticamente "
    "quando o profissional de saúde iniciar a chamada.",
    ar="أنت في غرفة الانتظار. يبدأ موعدك في الساعة %(time)s: سيتم إدخالك تلقائيًا عندما "
    "يبدأ الطبيب المكالمة.",
)
t(
    "You are in the waiting room. The appointment starts at %(time)s: you will be let in "
    "automatically when the clinician starts the call.",
    fr="Vous êtes dans la salle d’attente. Le rendez-vous commence à %(time)s : vous entrerez "
    "automatiquement quand le praticien lancera l’appel.",
    es="Está en la sala de espera. La cita empieza a las %(time)s: entrará automáticamente "
    "cuando el profesional sanitario inicie la llamada.",
    de="Sie sind im Wartezimmer. Der Termin beginnt um %(time)s Uhr: Sie werden automatisch "
    "eingelassen, sobald die Ärztin oder der Arzt das Gespräch beginnt.",
    pt="Está na sala de espera. A consulta começa às %(time)s: entrará automaticamente quando "
    "o profissional de saúde iniciar a chamada.",
    ar="أنت في غرفة الانتظار. يبدأ الموعد في الساعة %(time)s: سيتم إدخالك تلقائيًا عندما "
    "يبدأ الطبيب المكالمة.",
)
t(
    "You can enter backstage from %(time)s. Keep this page open: the button below works from then.",
    fr="Vous pourrez entrer en coulisses à partir de %(time)s. Gardez cette page ouverte : le "
    "bouton ci-dessous fonctionnera dès cette heure-là.",
    es="Podrá entrar entre bastidores a partir de las %(time)s. Mantenga esta página abierta: "
    "el botón de abajo funcionará desde entonces.",
    de="Sie können den Vorbereitungsraum ab %(time)s Uhr betreten. Lassen Sie diese Seite "
    "geöffnet: Die Schaltfläche unten funktioniert ab dann.",
    pt="Poderá entrar nos bastidores a partir das %(time)s. Mantenha esta página aberta: o "
    "botão abaixo funcionará a partir dessa hora.",
    ar="يمكنك الدخول إلى الكواليس ابتداءً من الساعة %(time)s. يُرجى إبقاء هذه الصفحة "
    "مفتوحة: سيعمل الزر أدناه من ذلك الوقت.",
)
t(
    "The waiting room opens at %(time)s. Keep this page open: the button below works from then.",
    fr="La salle d’attente ouvre à %(time)s. Gardez cette page ouverte : le bouton ci-dessous "
    "fonctionnera dès cette heure-là.",
    es="La sala de espera abre a las %(time)s. Mantenga esta página abierta: el botón de abajo "
    "funcionará desde entonces.",
    de="Das Wartezimmer öffnet um %(time)s Uhr. Lassen Sie diese Seite geöffnet: Die "
    "Schaltfläche unten funktioniert ab dann.",
    pt="A sala de espera abre às %(time)s. Mantenha esta página aberta: o botão abaixo "
    "funcionará a partir dessa hora.",
    ar="تُفتح غرفة الانتظار في الساعة %(time)s. يُرجى إبقاء هذه الصفحة مفتوحة: سيعمل الزر "
    "أدناه من ذلك الوقت.",
)
t(
    "Check your camera and microphone below, then select “%(button)s”.",
    fr="Vérifiez votre caméra et votre micro ci-dessous, puis sélectionnez « %(button)s ».",
    es="Compruebe su cámara y su micrófono abajo y, después, seleccione «%(button)s».",
    de="Prüfen Sie unten Ihre Kamera und Ihr Mikrofon und wählen Sie dann „%(button)s“.",
    pt="Verifique a sua câmara e o seu microfone abaixo e, depois, selecione «%(button)s».",
    ar="يُرجى التحقق من الكاميرا والميكروفون أدناه، ثم اختيار «%(button)s».",
)
t(
    "The connection was lost. Reconnecting…",
    fr="La connexion a été perdue. Reconnexion…",
    es="Se ha perdido la conexión. Reconectando…",
    de="Die Verbindung wurde unterbrochen. Sie wird wiederhergestellt …",
    pt="A ligação foi perdida. A restabelecer…",
    ar="انقطع الاتصال. جارٍ إعادة الاتصال…",
)
t(
    "Connecting…",
    fr="Connexion…",
    es="Conectando…",
    de="Verbindung wird hergestellt …",
    pt="A ligar…",
    ar="جارٍ الاتصال…",
)
t(
    "You are backstage: the patient cannot see or hear you until the call goes live.",
    fr="Vous êtes en coulisses : le patient ne peut ni vous voir ni vous entendre tant que "
    "l’appel n’est pas en direct.",
    es="Está entre bastidores: el paciente no puede verle ni oírle hasta que la llamada esté en "
    "directo.",
    de="Sie sind im Vorbereitungsraum: Die Patientin oder der Patient kann Sie erst sehen und "
    "hören, wenn das Gespräch live ist.",
    pt="Está nos bastidores: o paciente só o poderá ver e ouvir quando a chamada ficar em direto.",
    ar="أنت في الكواليس: لا يستطيع المريض رؤيتك أو سماعك حتى تصبح المكالمة مباشرة.",
)
t(
    "You are in the call.",
    fr="Vous êtes dans l’appel.",
    es="Está en la llamada.",
    de="Sie sind im Gespräch.",
    pt="Está na chamada.",
    ar="أنت الآن في المكالمة.",
)
t(
    "Backstage",
    fr="Coulisses",
    es="Entre bastidores",
    de="Vorbereitung",
    pt="Bastidores",
    ar="الكواليس",
)
t("Live", fr="En direct", es="En directo", de="Live", pt="Em direto", ar="مباشر")
t(
    "%(names)s is waiting in the lobby.",
    plural="%(names)s are waiting in the lobby.",
    fr=[
        "%(names)s attend dans la salle d’attente.",
        "%(names)s attendent dans la salle d’attente.",
    ],
    es=[
        "%(names)s está esperando en la sala de espera.",
        "%(names)s están esperando en la sala de espera.",
    ],
    de=["%(names)s wartet im Wartezimmer.", "%(names)s warten im Wartezimmer."],
    pt=["%(names)s aguarda na sala de espera.", "%(names)s aguardam na sala de espera."],
    # "… in the waiting room": the same for one person or several, a man or a woman.
    ar=ar6(few="%(names)s في غرفة الانتظار.", other="%(names)s في غرفة الانتظار."),
)

# --- room.js: the camera and microphone check ---------------------------------------------
# “Try again” is the page's button (templates/join/room.html); “Allow” is the browser's.

t(
    "Your browser is not allowing this page to use your camera and microphone. To allow them, "
    "select the camera icon or the padlock next to the web address, choose Allow, then select "
    "“Try again”. You can also join without them: you will see and hear the others, but they "
    "will not see or hear you.",
    fr="Votre navigateur n’autorise pas cette page à utiliser votre caméra et votre micro. Pour "
    "les autoriser, sélectionnez l’icône de caméra ou le cadenas à côté de l’adresse web, "
    "choisissez « Autoriser », puis sélectionnez « Réessayer ». Vous pouvez aussi rejoindre "
    "l’appel sans eux : vous verrez et entendrez les autres, mais ils ne pourront ni vous voir "
    "ni vous entendre.",
    es="Su navegador no permite que esta página use su cámara y su micrófono. Para permitirlo, "
    "seleccione el icono de la cámara o el candado junto a la dirección web, elija «Permitir» "
    "y, después, seleccione «Reintentar». También puede unirse sin ellos: verá y oirá a los "
    "demás, pero ellos no podrán verle ni oírle.",
    de="Ihr Browser erlaubt dieser Seite nicht, Ihre Kamera und Ihr Mikrofon zu verwenden. Um "
    "sie freizugeben, wählen Sie das Kamerasymbol oder das Schloss neben der Webadresse, dann "
    "„Zulassen“ und anschließend „Erneut versuchen“. Sie können auch ohne sie teilnehmen: Sie "
    "sehen und hören die anderen, aber diese können Sie weder sehen noch hören.",
    pt="O seu navegador não está a permitir que esta página utilize a sua câmara e o seu "
    "microfone. Para os permitir, selecione o ícone da câmara ou o cadeado junto ao endereço "
    "web, escolha «Permitir» e, depois, selecione «Tentar novamente». Também pode entrar sem "
    "eles: verá e ouvirá os outros participantes, mas eles não o poderão ver nem ouvir.",
    ar="لا يسمح متصفحك لهذه الصفحة باستخدام الكاميرا والميكروفون. للسماح بذلك، يُرجى "
    "اختيار رمز الكاميرا أو القفل بجانب عنوان الموقع، ثم «السماح»، ثم «إعادة المحاولة». "
    "ويمكنك أيضًا الانضمام من دونهما: سترى الآخرين وتسمعهم، لكنهم لن يتمكنوا من رؤيتك أو "
    "سماعك.",
)
t(
    "No camera or microphone was found. Connect one and select “Try again”, or join without "
    "them: you will see and hear the others, but they will not see or hear you.",
    fr="Aucune caméra ni aucun micro n’a été trouvé. Branchez-en un et sélectionnez "
    "« Réessayer », ou rejoignez l’appel sans eux : vous verrez et entendrez les autres, mais "
    "ils ne pourront ni vous voir ni vous entendre.",
    es="No se ha encontrado ninguna cámara ni ningún micrófono. Conecte uno y seleccione "
    "«Reintentar», o únase sin ellos: verá y oirá a los demás, pero ellos no podrán verle ni "
    "oírle.",
    de="Es wurde keine Kamera und kein Mikrofon gefunden. Schließen Sie ein Gerät an und wählen "
    "Sie „Erneut versuchen“, oder nehmen Sie ohne teil: Sie sehen und hören die anderen, aber "
    "diese können Sie weder sehen noch hören.",
    pt="Não foi encontrada nenhuma câmara nem nenhum microfone. Ligue um e selecione «Tentar "
    "novamente», ou entre sem eles: verá e ouvirá os outros participantes, mas eles não o "
    "poderão ver nem ouvir.",
    ar="لم يُعثر على كاميرا أو ميكروفون. يُرجى توصيل أحدهما واختيار «إعادة المحاولة»، أو "
    "الانضمام من دونهما: سترى الآخرين وتسمعهم، لكنهم لن يتمكنوا من رؤيتك أو سماعك.",
)
t(
    "No camera was found: you will join with sound only.",
    fr="Aucune caméra n’a été trouvée : vous rejoindrez l’appel avec le son uniquement.",
    es="No se ha encontrado ninguna cámara: se unirá solo con audio.",
    de="Es wurde keine Kamera gefunden: Sie nehmen nur mit Ton teil.",
    pt="Não foi encontrada nenhuma câmara: entrará apenas com som.",
    ar="لم يُعثر على كاميرا: ستنضم بالصوت فقط.",
)
t(
    "No microphone was found: the others will see you but not hear you.",
    fr="Aucun micro n’a été trouvé : les autres vous verront mais ne vous entendront pas.",
    es="No se ha encontrado ningún micrófono: los demás le verán, pero no le oirán.",
    de="Es wurde kein Mikrofon gefunden: Die anderen sehen Sie, hören Sie aber nicht.",
    pt="Não foi encontrado nenhum microfone: os outros participantes vão vê-lo, mas não ouvi-lo.",
    ar="لم يُعثر على ميكروفون: سيراك الآخرون لكنهم لن يسمعوك.",
)
t(
    "Your camera or microphone is being used by another application. Close it, then select "
    "“Try again”.",
    fr="Votre caméra ou votre micro est utilisé par une autre application. Fermez-la, puis "
    "sélectionnez « Réessayer ».",
    es="Otra aplicación está usando su cámara o su micrófono. Ciérrela y, después, seleccione "
    "«Reintentar».",
    de="Ihre Kamera oder Ihr Mikrofon wird von einer anderen Anwendung verwendet. Schließen Sie "
    "diese und wählen Sie dann „Erneut versuchen“.",
    pt="A sua câmara ou o seu microfone está a ser utilizado por outra aplicação. Feche-a e, "
    "depois, selecione «Tentar novamente».",
    ar="يستخدم تطبيق آخر الكاميرا أو الميكروفون. يُرجى إغلاقه ثم اختيار «إعادة المحاولة».",
)
t(
    "This browser cannot use a camera or microphone on this page. You can still join to see and "
    "hear the others.",
    fr="Ce navigateur ne peut pas utiliser de caméra ni de micro sur cette page. Vous pouvez tout "
    "de même rejoindre l’appel pour voir et entendre les autres.",
    es="Este navegador no puede usar una cámara ni un micrófono en esta página. Aun así, puede "
    "unirse para ver y oír a los demás.",
    de="Dieser Browser kann auf dieser Seite keine Kamera und kein Mikrofon verwenden. Sie können "
    "trotzdem teilnehmen, um die anderen zu sehen und zu hören.",
    pt="Este navegador não consegue utilizar uma câmara nem um microfone nesta página. Mesmo "
    "assim, pode entrar para ver e ouvir os outros participantes.",
    ar="لا يستطيع هذا المتصفح استخدام كاميرا أو ميكروفون على هذه الصفحة. ولا يزال بإمكانك "
    "الانضمام لرؤية الآخرين وسماعهم.",
)
t(
    "Audio only",
    fr="Audio uniquement",
    es="Solo audio",
    de="Nur Audio",
    pt="Apenas áudio",
    ar="صوت فقط",
)
t(
    "No camera",
    fr="Pas de caméra",
    es="Sin cámara",
    de="Keine Kamera",
    pt="Sem câmara",
    ar="لا توجد كاميرا",
)
# What a tile shows when someone's camera is off (a state; the control that turns it off is
# "call control" / "Camera off" below).
t(
    "Camera off",
    fr="Caméra désactivée",
    es="Cámara desactivada",
    de="Kamera aus",
    pt="Câmara desligada",
    ar="الكاميرا متوقفة",
)
t(
    "Muted",
    fr="Micro coupé",
    es="Micrófono silenciado",
    de="Stummgeschaltet",
    pt="Som desativado",
    ar="الصوت مكتوم",
)
t(
    "Camera %(n)s",
    fr="Caméra %(n)s",
    es="Cámara %(n)s",
    de="Kamera %(n)s",
    pt="Câmara %(n)s",
    ar="كاميرا %(n)s",
)
t(
    "Microphone %(n)s",
    fr="Microphone %(n)s",
    es="Micrófono %(n)s",
    de="Mikrofon %(n)s",
    pt="Microfone %(n)s",
    ar="ميكروفون %(n)s",
)
t(
    "No camera available",
    fr="Aucune caméra disponible",
    es="No hay ninguna cámara disponible",
    de="Keine Kamera verfügbar",
    pt="Nenhuma câmara disponível",
    ar="لا تتوفر كاميرا",
)
t(
    "No microphone available",
    fr="Aucun micro disponible",
    es="No hay ningún micrófono disponible",
    de="Kein Mikrofon verfügbar",
    pt="Nenhum microfone disponível",
    ar="لا يتوفر ميكروفون",
)

# --- room.js: the call's controls ---------------------------------------------------------
# Short: a control's label has a phone's button, about ten letters a line (German's
# "Stummschalten" would break inside the word).

t(
    "Unmute",
    fr="Activer le micro",
    es="Reactivar audio",
    de="Mikro an",
    pt="Ativar som",
    ar="إلغاء الكتم",
)
t(
    "Mute",
    fr="Couper le micro",
    es="Silenciar",
    de="Mikro aus",
    pt="Desativar som",
    ar="كتم الصوت",
)
t(
    ("call control", "Camera off"),
    fr="Couper la caméra",
    es="Apagar cámara",
    de="Kamera aus",
    pt="Desligar câmara",
    ar="إيقاف الكاميرا",
)
t(
    ("call control", "Camera on"),
    fr="Activer la caméra",
    es="Encender cámara",
    de="Kamera an",
    pt="Ligar câmara",
    ar="تشغيل الكاميرا",
)
t(
    "Your screen could not be shared.",
    fr="Votre écran n’a pas pu être partagé.",
    es="No se ha podido compartir su pantalla.",
    de="Ihr Bildschirm konnte nicht freigegeben werden.",
    pt="Não foi possível partilhar o seu ecrã.",
    ar="تعذّرت مشاركة شاشتك.",
)
t(
    "Stop sharing",
    fr="Arrêter le partage",
    es="Dejar de compartir",
    de="Freigabe beenden",
    pt="Parar de partilhar",
    ar="إيقاف المشاركة",
)
t(
    "Share screen",
    fr="Partager l’écran",
    es="Compartir pantalla",
    de="Bildschirm freigeben",
    pt="Partilhar ecrã",
    ar="مشاركة الشاشة",
)
t(
    "The clinic has turned off your microphone in this call",
    fr="La clinique a désactivé votre micro pour cet appel",
    es="La clínica ha desactivado su micrófono en esta llamada",
    de="Die Praxis hat Ihr Mikrofon in diesem Gespräch ausgeschaltet",
    pt="A clínica desativou o seu microfone nesta chamada",
    ar="أوقفت العيادة الميكروفون لديك في هذه المكالمة",
)
t(
    "The clinic has turned off your camera in this call",
    fr="La clinique a désactivé votre caméra pour cet appel",
    es="La clínica ha desactivado su cámara en esta llamada",
    de="Die Praxis hat Ihre Kamera in diesem Gespräch ausgeschaltet",
    pt="A clínica desativou a sua câmara nesta chamada",
    ar="أوقفت العيادة الكاميرا لديك في هذه المكالمة",
)

# --- room.js: when the call cannot go on, and the end ---------------------------------------

t(
    "The call has ended",
    fr="L’appel est terminé",
    es="La llamada ha finalizado",
    de="Das Gespräch ist beendet",
    pt="A chamada terminou",
    ar="انتهت المكالمة",
)
t(
    "You cannot join this call",
    fr="Vous ne pouvez pas rejoindre cet appel",
    es="No puede unirse a esta llamada",
    de="Sie können an diesem Gespräch nicht teilnehmen",
    pt="Não pode entrar nesta chamada",
    ar="لا يمكنك الانضمام إلى هذه المكالمة",
)
t(
    "You are not allowed to join it. Contact the clinic.",
    fr="Vous n’avez pas l’autorisation de le rejoindre. Contactez la clinique.",
    es="No tiene permiso para unirse. Póngase en contacto con la clínica.",
    de="Sie sind nicht berechtigt teilzunehmen. Wenden Sie sich bitte an die Praxis.",
    pt="Não tem permissão para entrar. Contacte a clínica.",
    ar="ليس لديك إذن بالانضمام إليها. يُرجى التواصل مع العيادة.",
)
t(
    "This call does not exist",
    fr="Cet appel n’existe pas",
    es="Esta llamada no existe",
    de="Dieses Gespräch gibt es nicht",
    pt="Esta chamada não existe",
    ar="هذه المكالمة غير موجودة",
)
t(
    "Contact the clinic.",
    fr="Contactez la clinique.",
    es="Póngase en contacto con la clínica.",
    de="Wenden Sie sich bitte an die Praxis.",
    pt="Contacte a clínica.",
    ar="يُرجى التواصل مع العيادة.",
)
t(
    "You cannot join right now",
    fr="Vous ne pouvez pas rejoindre l’appel pour le moment",
    es="No puede unirse en este momento",
    de="Sie können gerade nicht teilnehmen",
    pt="Não pode entrar neste momento",
    ar="لا يمكنك الانضمام الآن",
)
t(
    "This page has expired",
    fr="Cette page a expiré",
    es="Esta página ha caducado",
    de="Diese Seite ist abgelaufen",
    pt="Esta página expirou",
    ar="انتهت صلاحية هذه الصفحة",
)
t(
    "Reload the page to join again.",
    fr="Rechargez la page pour rejoindre l’appel à nouveau.",
    es="Vuelva a cargar la página para unirse de nuevo.",
    de="Laden Sie die Seite neu, um wieder teilzunehmen.",
    pt="Recarregue a página para voltar a entrar.",
    ar="يُرجى إعادة تحميل الصفحة للانضمام مجددًا.",
)
t(
    "This page is not valid any more",
    fr="Cette page n’est plus valide",
    es="Esta página ya no es válida",
    de="Diese Seite ist nicht mehr gültig",
    pt="Esta página já não é válida",
    ar="لم تعد هذه الصفحة صالحة",
)
t(
    "It cannot be joined again.",
    fr="Il n’est plus possible de le rejoindre.",
    es="Ya no es posible volver a unirse.",
    de="Eine erneute Teilnahme ist nicht möglich.",
    pt="Já não é possível voltar a entrar.",
    ar="لا يمكن الانضمام إليها مجددًا.",
)
t(
    "This call is open in another tab",
    fr="Cet appel est ouvert dans un autre onglet",
    es="Esta llamada está abierta en otra pestaña",
    de="Dieses Gespräch ist in einem anderen Tab geöffnet",
    pt="Esta chamada está aberta noutro separador",
    ar="هذه المكالمة مفتوحة في علامة تبويب أخرى",
)
t(
    "You are in the call in your other tab or device. To use this one instead, select “Use here”.",
    fr="Vous êtes dans l’appel sur votre autre onglet ou appareil. Pour utiliser celui-ci à la "
    "place, sélectionnez « Utiliser ici ».",
    es="Está en la llamada en su otra pestaña o dispositivo. Para usar este en su lugar, "
    "seleccione «Usar aquí».",
    de="Sie nehmen in Ihrem anderen Tab oder auf Ihrem anderen Gerät am Gespräch teil. Um "
    "stattdessen dieses zu verwenden, wählen Sie „Hier verwenden“.",
    pt="Está na chamada noutro separador ou dispositivo. Para utilizar este, selecione "
    "«Utilizar aqui».",
    ar="أنت في المكالمة من علامة تبويب أو جهاز آخر. لاستخدام هذه الصفحة بدلًا منه، يُرجى "
    "اختيار «الاستخدام هنا».",
)
t(
    "Use here",
    fr="Utiliser ici",
    es="Usar aquí",
    de="Hier verwenden",
    pt="Utilizar aqui",
    ar="الاستخدام هنا",
)
t(
    "You were removed from the call",
    fr="Vous avez été retiré de l’appel",
    es="Se le ha retirado de la llamada",
    de="Sie wurden aus dem Gespräch entfernt",
    pt="Foi removido da chamada",
    ar="تمت إزالتك من المكالمة",
)
t(
    "You cannot join it again. Contact the clinic if you think this is a mistake.",
    fr="Vous ne pouvez plus le rejoindre. Contactez la clinique si vous pensez qu’il s’agit "
    "d’une erreur.",
    es="Ya no puede volver a unirse. Póngase en contacto con la clínica si cree que se trata de "
    "un error.",
    de="Sie können nicht erneut teilnehmen. Wenden Sie sich an die Praxis, wenn Sie dies für "
    "einen Fehler halten.",
    pt="Não pode voltar a entrar. Contacte a clínica se considerar que se trata de um erro.",
    ar="لا يمكنك الانضمام إليها مجددًا. يُرجى التواصل مع العيادة إذا كنت تعتقد أن هذا خطأ.",
)
t(
    "You can join again if the clinic asks you to.",
    fr="Vous pourrez le rejoindre à nouveau si la clinique vous le demande.",
    es="Podrá volver a unirse si la clínica se lo pide.",
    de="Sie können wieder teilnehmen, wenn die Praxis Sie darum bittet.",
    pt="Poderá voltar a entrar se a clínica lho pedir.",
    ar="يمكنك الانضمام مجددًا إذا طلبت منك العيادة ذلك.",
)
t(
    "%(name)s joined.",
    fr="%(name)s a rejoint l’appel.",
    es="%(name)s se ha unido.",
    de="%(name)s ist beigetreten.",
    pt="%(name)s entrou na chamada.",
    ar="انضم %(name)s إلى المكالمة.",
)
t(
    "%(name)s left the call.",
    fr="%(name)s a quitté l’appel.",
    es="%(name)s ha salido de la llamada.",
    de="%(name)s hat das Gespräch verlassen.",
    pt="%(name)s saiu da chamada.",
    ar="غادر %(name)s المكالمة.",
)
t(
    "Your microphone and camera were turned off by the host. You can turn them on again.",
    fr="L’organisateur de l’appel a coupé votre micro et votre caméra. Vous pouvez les réactiver.",
    es="El organizador de la llamada ha desactivado su micrófono y su cámara. Puede volver a "
    "activarlos.",
    de="Die Gesprächsleitung hat Ihr Mikrofon und Ihre Kamera ausgeschaltet. Sie können sie "
    "wieder einschalten.",
    pt="O organizador da chamada desligou o seu microfone e a sua câmara. Pode voltar a ligá-los.",
    ar="أوقف منظّم المكالمة الميكروفون والكاميرا لديك. يمكنك تشغيلهما مجددًا.",
)
t(
    "Your microphone was turned off by the host. You can turn it on again.",
    fr="L’organisateur de l’appel a coupé votre micro. Vous pouvez le réactiver.",
    es="El organizador de la llamada ha desactivado su micrófono. Puede volver a activarlo.",
    de="Die Gesprächsleitung hat Ihr Mikrofon ausgeschaltet. Sie können es wieder einschalten.",
    pt="O organizador da chamada desligou o seu microfone. Pode voltar a ligá-lo.",
    ar="أوقف منظّم المكالمة الميكروفون لديك. يمكنك تشغيله مجددًا.",
)
t(
    "Your camera was turned off by the host. You can turn it on again.",
    fr="L’organisateur de l’appel a coupé votre caméra. Vous pouvez la réactiver.",
    es="El organizador de la llamada ha desactivado su cámara. Puede volver a activarla.",
    de="Die Gesprächsleitung hat Ihre Kamera ausgeschaltet. Sie können sie wieder einschalten.",
    pt="O organizador da chamada desligou a sua câmara. Pode voltar a ligá-la.",
    ar="أوقف منظّم المكالمة الكاميرا لديك. يمكنك تشغيلها مجددًا.",
)
t(
    "Thank you. You can close this page.",
    fr="Merci. Vous pouvez fermer cette page.",
    es="Gracias. Ya puede cerrar esta página.",
    de="Vielen Dank. Sie können diese Seite jetzt schließen.",
    pt="Obrigado. Pode fechar esta página.",
    ar="شكرًا لك. يمكنك إغلاق هذه الصفحة.",
)
t(
    "You can go back to the appointment.",
    fr="Vous pouvez revenir au rendez-vous.",
    es="Puede volver a la cita.",
    de="Sie können zum Termin zurückkehren.",
    pt="Pode voltar à consulta.",
    ar="يمكنك العودة إلى الموعد.",
)
t(
    "You left the waiting room",
    fr="Vous avez quitté la salle d’attente",
    es="Ha salido de la sala de espera",
    de="Sie haben das Wartezimmer verlassen",
    pt="Saiu da sala de espera",
    ar="لقد غادرت غرفة الانتظار",
)
t(
    "You left the call",
    fr="Vous avez quitté l’appel",
    es="Ha salido de la llamada",
    de="Sie haben das Gespräch verlassen",
    pt="Saiu da chamada",
    ar="لقد غادرت المكالمة",
)
t(
    "You can join again while the appointment is on.",
    fr="Vous pouvez rejoindre l’appel à nouveau tant que le rendez-vous est en cours.",
    es="Puede volver a unirse mientras la cita siga en curso.",
    de="Sie können wieder teilnehmen, solange der Termin läuft.",
    pt="Pode voltar a entrar enquanto a consulta decorrer.",
    ar="يمكنك الانضمام مجددًا ما دام الموعد قائمًا.",
)
t(
    "in about %(n)s minute",
    plural="in about %(n)s minutes",
    fr=["dans environ %(n)s minute", "dans environ %(n)s minutes"],
    es=["en aproximadamente %(n)s minuto", "en aproximadamente %(n)s minutos"],
    de=["in etwa %(n)s Minute", "in etwa %(n)s Minuten"],
    pt=["daqui a cerca de %(n)s minuto", "daqui a cerca de %(n)s minutos"],
    ar=ar6(few="خلال %(n)s دقائق تقريبًا", other="خلال %(n)s دقيقة تقريبًا"),
)
t(
    "The call ends automatically at %(time)s (%(about)s).",
    fr="L’appel se terminera automatiquement à %(time)s (%(about)s).",
    es="La llamada finalizará automáticamente a las %(time)s (%(about)s).",
    de="Das Gespräch endet automatisch um %(time)s Uhr (%(about)s).",
    pt="A chamada termina automaticamente às %(time)s (%(about)s).",
    ar="ستنتهي المكالمة تلقائيًا في الساعة %(time)s (%(about)s).",
)
t(
    "Something went wrong.",
    fr="Une erreur s’est produite.",
    es="Se ha producido un error.",
    de="Ein Fehler ist aufgetreten.",
    pt="Ocorreu um erro.",
    ar="حدث خطأ ما.",
)
t(
    "This call cannot be joined from this page",
    fr="Impossible de rejoindre cet appel depuis cette page",
    es="No es posible unirse a esta llamada desde esta página",
    de="An diesem Gespräch kann von dieser Seite aus nicht teilgenommen werden",
    pt="Não é possível entrar nesta chamada a partir desta página",
    ar="لا يمكن الانضمام إلى هذه المكالمة من هذه الصفحة",
)
t(
    "Its media server is not supported here.",
    fr="Son serveur multimédia n’est pas pris en charge ici.",
    es="Su servidor multimedia no es compatible aquí.",
    de="Der Medienserver des Gesprächs wird hier nicht unterstützt.",
    pt="O servidor multimédia desta chamada não é suportado aqui.",
    ar="خادم الوسائط الخاص بها غير مدعوم هنا.",
)

# --- room.js: the tiles -------------------------------------------------------------------

t("Remove", fr="Retirer", es="Quitar", de="Entfernen", pt="Remover", ar="إزالة")
t(
    "this person",
    fr="cette personne",
    es="esta persona",
    de="diese Person",
    pt="esta pessoa",
    ar="هذا الشخص",
)
t(
    "Remove %(name)s from the call? They can join again.",
    fr="Retirer %(name)s de l’appel ? Cette personne pourra le rejoindre à nouveau.",
    es="¿Quitar a %(name)s de la llamada? Podrá volver a unirse.",
    de="%(name)s aus dem Gespräch entfernen? Eine erneute Teilnahme bleibt möglich.",
    pt="Remover %(name)s da chamada? Poderá voltar a entrar.",
    ar="هل تريد إزالة %(name)s من المكالمة؟ سيظل بإمكانه الانضمام مجددًا.",
)
t(
    "Connection unknown",
    fr="Qualité de connexion inconnue",
    es="Conexión desconocida",
    de="Verbindung unbekannt",
    pt="Ligação desconhecida",
    ar="حالة الاتصال غير معروفة",
)
t(
    "Video of %(name)s",
    fr="Vidéo de %(name)s",
    es="Vídeo de %(name)s",
    de="Video von %(name)s",
    pt="Vídeo de %(name)s",
    ar="فيديو %(name)s",
)
t(
    "%(name)s (screen)",
    fr="%(name)s (écran)",
    es="%(name)s (pantalla)",
    de="%(name)s (Bildschirm)",
    pt="%(name)s (ecrã)",
    ar="%(name)s (الشاشة)",
)
t(
    "Mute %(name)s",
    fr="Couper le micro de %(name)s",
    es="Silenciar a %(name)s",
    de="%(name)s stummschalten",
    pt="Desativar o som de %(name)s",
    ar="كتم صوت %(name)s",
)
t(
    "Remove %(name)s from the call",
    fr="Retirer %(name)s de l’appel",
    es="Quitar a %(name)s de la llamada",
    de="%(name)s aus dem Gespräch entfernen",
    pt="Remover %(name)s da chamada",
    ar="إزالة %(name)s من المكالمة",
)
t(
    "Someone joining…",
    fr="Quelqu’un arrive…",
    es="Alguien se está uniendo…",
    de="Jemand tritt bei …",
    pt="Alguém está a entrar…",
    ar="شخص ما ينضم…",
)
t(
    "Select the video to hear the others (your browser blocked autoplay).",
    fr="Sélectionnez la vidéo pour entendre les autres (votre navigateur a bloqué la lecture "
    "automatique).",
    es="Seleccione el vídeo para oír a los demás (su navegador ha bloqueado la reproducción "
    "automática).",
    de="Wählen Sie das Video aus, um die anderen zu hören (Ihr Browser hat die automatische "
    "Wiedergabe blockiert).",
    pt="Selecione o vídeo para ouvir os outros participantes (o seu navegador bloqueou a "
    "reprodução automática).",
    ar="يُرجى اختيار الفيديو لسماع الآخرين (حظر متصفحك التشغيل التلقائي).",
)

# --- room.js: a replaced link (the end states) ---------------------------------------------

t(
    "This link no longer works",
    fr="Ce lien ne fonctionne plus",
    es="Este enlace ya no funciona",
    de="Dieser Link funktioniert nicht mehr",
    pt="Este link já não funciona",
    ar="هذا الرابط لم يعد صالحًا",
)
t(
    "The clinic has sent a new link for this appointment. Open the newest link they sent you, or "
    "contact the clinic.",
    fr="La clinique a envoyé un nouveau lien pour ce rendez-vous. Ouvrez le lien le plus récent "
    "qu’elle vous a envoyé, ou contactez-la.",
    es="La clínica ha enviado un nuevo enlace para esta cita. Abra el enlace más reciente que le "
    "haya enviado o póngase en contacto con ella.",
    de="Die Praxis hat einen neuen Link für diesen Termin gesendet. Öffnen Sie den neuesten Link, "
    "den Sie von ihr erhalten haben, oder wenden Sie sich an die Praxis.",
    pt="A clínica enviou um novo link para esta consulta. Abra o link mais recente que lhe "
    "enviou ou contacte a clínica.",
    ar="أرسلت العيادة رابطًا جديدًا لهذا الموعد. يُرجى فتح أحدث رابط أُرسل إليك، أو التواصل "
    "مع العيادة.",
)
t(
    "Contact the clinic if you think this is a mistake.",
    fr="Contactez la clinique si vous pensez qu’il s’agit d’une erreur.",
    es="Póngase en contacto con la clínica si cree que se trata de un error.",
    de="Wenden Sie sich an die Praxis, wenn Sie dies für einen Fehler halten.",
    pt="Contacte a clínica se considerar que se trata de um erro.",
    ar="يُرجى التواصل مع العيادة إذا كنت تعتقد أن هذا خطأ.",
)
t(
    "Join again",
    fr="Rejoindre à nouveau",
    es="Volver a unirse",
    de="Erneut teilnehmen",
    pt="Voltar a entrar",
    ar="الانضمام مجددًا",
)

# --- stage.js: each tile's connection -----------------------------------------------------

t(
    "Connection good",
    fr="Bonne connexion",
    es="Conexión buena",
    de="Verbindung gut",
    pt="Ligação boa",
    ar="الاتصال جيد",
)
t(
    "Connection fair",
    fr="Connexion moyenne",
    es="Conexión aceptable",
    de="Verbindung mittel",
    pt="Ligação razoável",
    ar="الاتصال مقبول",
)
t(
    "Connection poor",
    fr="Connexion faible",
    es="Conexión deficiente",
    de="Verbindung schwach",
    pt="Ligação fraca",
    ar="الاتصال ضعيف",
)
t(
    "No media is arriving",
    fr="Aucun son ni image ne parvient",
    es="No llega audio ni vídeo",
    de="Es kommen weder Ton noch Bild an",
    pt="Não está a chegar som nem imagem",
    ar="لا يصل أي صوت أو صورة",
)
t(
    "%(ms)s ms delay",
    fr="%(ms)s ms de latence",
    es="%(ms)s ms de retardo",
    de="%(ms)s ms Verzögerung",
    pt="%(ms)s ms de atraso",
    ar="تأخير %(ms)s ملّي ثانية",
)
t(
    "%(lost)s lost",
    fr="%(lost)s de perte",
    es="%(lost)s de pérdida",
    de="%(lost)s Verlust",
    pt="%(lost)s de perda",
    ar="فقدان %(lost)s",
)
t(
    "%(kbps)s kbit/s",
    fr="%(kbps)s kbit/s",
    es="%(kbps)s kbit/s",
    de="%(kbps)s kbit/s",
    pt="%(kbps)s kbit/s",
    ar="%(kbps)s كيلوبت/ث",
)
t(
    "%(level)s (%(details)s)",
    fr="%(level)s (%(details)s)",
    es="%(level)s (%(details)s)",
    de="%(level)s (%(details)s)",
    pt="%(level)s (%(details)s)",
    ar="%(level)s (%(details)s)",
)


# --- extracting, filling, compiling ---------------------------------------------------------


def setup_django() -> None:
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def extract(root: Path = BASE_DIR, languages: list[str] = LANGUAGES) -> None:
    """`manage.py makemessages -d djangojs` over `root` (the project, or a copy of its
    scripts): writes root/locale/<lang>/LC_MESSAGES/djangojs.po, merged with what is there
    (msgmerge), without obsolete entries. Needs GNU gettext (xgettext, msgmerge)."""
    from django.core.management import call_command
    from django.test import override_settings

    with chdir(root), override_settings(LOCALE_PATHS=[root / "locale"]):
        call_command(
            "makemessages",
            domain=DOMAIN,
            locale=languages,
            ignore_patterns=IGNORE,
            no_obsolete=True,
            verbosity=0,
        )


def copy_scripts(destination: Path) -> None:
    """The project's .js files (not under IGNORE) at the same paths under `destination`, for
    an extraction that leaves the committed catalogues alone."""
    for dirpath, dirnames, filenames in os.walk(BASE_DIR):
        dirnames[:] = [d for d in dirnames if d not in IGNORE and d not in {".git", "locale"}]
        for name in filenames:
            if name.endswith(".js"):
                source = Path(dirpath) / name
                target = destination / source.relative_to(BASE_DIR)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


def key_of(entry) -> Key:
    return (entry.msgctxt, entry.msgid) if entry.msgctxt else entry.msgid


def fill(language: str, po_path: Path) -> None:
    """Writes TRANSLATIONS into one language's catalogue; a text without a translation here,
    or a plural text with the wrong number of forms, stops the script."""
    import polib

    po = polib.pofile(str(po_path), wrapwidth=99)
    po.metadata.update(
        {
            "Project-Id-Version": "appointment-calls",
            "Report-Msgid-Bugs-To": "",
            "Last-Translator": "",
            "Language-Team": LANGUAGE_NAMES[language],
            "Language": language,
            "MIME-Version": "1.0",
            "Content-Type": "text/plain; charset=UTF-8",
            "Content-Transfer-Encoding": "8bit",
            "Plural-Forms": PLURAL_FORMS[language],
        }
    )
    po.metadata["PO-Revision-Date"] = po.metadata.get("POT-Creation-Date", "")
    po.metadata_is_fuzzy = False  # a fuzzy header would leave Plural-Forms out of the .mo
    po.header = f"The join pages' scripts' texts in {LANGUAGE_NAMES[language]}: bin/js_messages.py."
    forms = int(PLURAL_FORMS[language].split(";")[0].split("=")[1])
    missing = []
    for entry in po:
        translated = TRANSLATIONS.get(key_of(entry), {}).get(language)
        if translated is None:
            missing.append(key_of(entry))
            continue
        if language == "fr":
            translated = (
                [french_spacing(s) for s in translated]
                if isinstance(translated, list)
                else french_spacing(translated)
            )
        if entry.msgid_plural:
            if not isinstance(translated, list) or len(translated) != forms:
                raise SystemExit(f"{language}: {entry.msgid!r} needs {forms} plural forms")
            entry.msgstr_plural = dict(enumerate(translated))
        else:
            if isinstance(translated, list):
                raise SystemExit(f"{language}: {entry.msgid!r} is not a plural text")
            entry.msgstr = translated
        if "fuzzy" in entry.flags:
            entry.flags.remove("fuzzy")
        entry.previous_msgid = entry.previous_msgid_plural = entry.previous_msgctxt = None
    if missing:
        raise SystemExit(
            f"{language}: no translation in bin/js_messages.py for:\n"
            + "\n".join(f"  {m!r}" for m in missing)
        )
    po.save()


def compile_catalogue(po_path: Path) -> None:
    msgfmt = shutil.which("msgfmt")
    if not msgfmt:
        raise SystemExit("msgfmt not found: apt-get install gettext")
    # Our own paths, no shell.
    subprocess.run(  # noqa: S603
        [msgfmt, "--check", "-o", str(po_path.with_suffix(".mo")), str(po_path)], check=True
    )


def main() -> None:
    import polib

    setup_django()
    extract()
    for language in LANGUAGES:
        po_path = BASE_DIR / "locale" / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        fill(language, po_path)
        compile_catalogue(po_path)
        print(f"{po_path.relative_to(BASE_DIR)}: {len(polib.pofile(str(po_path)))} texts")


if __name__ == "__main__":
    main()
