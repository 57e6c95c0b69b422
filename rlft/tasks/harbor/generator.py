"""The Harbor Goods support task, generated from the policy sheet (shared/support_policy.md).

Everything here is deterministic by seed. The generator composes customer messages from
templates with slots (order number, product) and replies from parts (greeting, apology,
one sentence per fact, offer of further help), so there are many correct phrasings and a
model has to learn the facts of each intent rather than one canned string.

Three disjoint splits, by customer template, order number and product (`SPLITS`):
  train  what every stage trains on (and rlft-tiny was pretrained on)
  dev    what recipes, early stopping, validation losses, drift budgets and any training-time
         KL read: tune on this
  test   what the README reports; no code path that trains reads it (tests/test_splits.py)
So generalisation is measured, not recall: dev and test customers use phrasings, order
numbers and products that no training row contains, and test ones that nobody tuned on.

Row kinds (plain dicts, TRL's conversational formats):
  sft        {"messages": [user, assistant]}
  pairs      {"prompt": [user], "chosen": [assistant], "rejected": [assistant], "kind": ...}
  prompts    {"prompt": [user], "intent": ..., "order": ...}       (online RL)
  tasks      tasks-file rows: {"id", "intent", "cluster", "messages", "required", "forbidden", "reference"}
  pretrain   {"messages": [user, assistant]} in mixed tone with one fact only (for the base)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rlft.tasks.harbor.tone import went_wrong

# --- the policy sheet as data -------------------------------------------------------------

# Fact regexes accept the spellings the sheet allows ("3-5", "3 to 5", "three to five" ...).
_3_5_DAYS = r"(3\s*(-|–|to)\s*5|three to five) business days"
_1_2_DAYS = r"(1\s*(-|–|to)\s*2|one to two) business days"
_5_7_DAYS = r"(5\s*(-|–|to)\s*7|five to seven) business days"


@dataclass(frozen=True)
class Fact:
    pattern: str  # what a checker accepts (case-insensitive regex)
    says: tuple[str, ...]  # sentences stating the fact
    wrong: tuple[str, ...]  # sentences stating an invented policy instead
    wrong_pattern: str  # matches the invented policies in `wrong`


@dataclass(frozen=True)
class Intent:
    name: str
    facts: tuple[Fact, ...]
    order_share: float  # how often the customer gives an order number
    went_wrong: bool  # something went wrong for the customer: the reply apologises


INTENTS: dict[str, Intent] = {
    i.name: i
    for i in [
        Intent("order_status", (
            Fact(_3_5_DAYS,
                 ("Standard shipping takes 3-5 business days.",
                  "With standard shipping it arrives in 3 to 5 business days."),
                 ("Standard shipping takes 10-14 business days.",),
                 r"10\s*(-|to)\s*14 business days"),
            Fact(_1_2_DAYS,
                 ("Express shipping takes 1-2 business days.",
                  "Express orders arrive in 1 to 2 business days."),
                 ("Express shipping takes 6-8 business days.",),
                 r"6\s*(-|to)\s*8 business days"),
            Fact(r"tracking link",
                 ("We email you a tracking link as soon as it ships.",
                  "A tracking link is emailed to you when the order ships."),
                 ("We do not send tracking information.",),
                 r"do not send tracking"),
        ), order_share=0.8, went_wrong=False),
        Intent("return_refund", (
            Fact(r"(30|thirty)[ -]days?",
                 ("Returns are accepted within 30 days of delivery.",
                  "You can return it within thirty days of delivery."),
                 ("Returns are accepted within 90 days of purchase.",),
                 r"(90|ninety)[ -]days?"),
            Fact(r"original payment method",
                 ("The refund goes back to your original payment method.",
                  "We refund the original payment method."),
                 ("The refund is paid as store credit only.",),
                 r"store credit"),
            Fact(_5_7_DAYS,
                 ("It arrives within 5-7 business days after we receive the return.",
                  "Expect it within 5 to 7 business days once the return arrives."),
                 ("It takes about two months to process.",),
                 r"two months"),
            Fact(r"prepaid return label",
                 ("We will email you a prepaid return label.",
                  "A prepaid return label is on its way to your inbox."),
                 ("You pay for the return shipping yourself.",),
                 r"pay for the return shipping"),
        ), order_share=0.4, went_wrong=False),
        Intent("cancel_order", (
            Fact(r"(until|before) (it|the order|your order) (ships|has shipped)",
                 ("An order can be cancelled until it ships.",
                  "You can cancel any order until it ships."),
                 ("Orders can never be cancelled.",),
                 r"never be cancelled"),
            Fact(r"account\s*>\s*orders\s*>\s*cancel",
                 ("Go to Account > Orders > Cancel.",
                  "Use Account > Orders > Cancel to do it."),
                 ("Call our head office to cancel.",),
                 r"head office"),
            Fact(r"\breturn(ed)?\b",
                 ("If it has already shipped, it must be returned instead.",
                  "Once shipped, please return it instead."),
                 ("Shipped orders are cancelled automatically.",),
                 r"cancelled automatically"),
        ), order_share=0.8, went_wrong=False),
        Intent("damaged_item", (
            Fact(r"photo",
                 ("Could you send us a photo of the damage?",
                  "Please reply with a photo of the damage."),
                 ("There is nothing to send us.",),
                 r"nothing to send"),
            Fact(r"free replacement",
                 ("We will ship you a free replacement, or a full refund if you prefer.",
                  "A free replacement goes out to you, or a full refund if you would rather."),
                 ("A replacement costs a 15 dollar fee.",),
                 r"15 dollar fee"),
        ), order_share=0.8, went_wrong=True),
        Intent("change_address", (
            Fact(r"before (it|the order|your order) ships",
                 ("The address can be changed before the order ships.",
                  "You can change it before your order ships."),
                 ("Addresses can be changed up to a week after delivery.",),
                 r"after delivery"),
            Fact(r"account\s*>\s*orders\s*>\s*edit address",
                 ("Go to Account > Orders > Edit address.",
                  "Use Account > Orders > Edit address."),
                 ("Send us a letter with the new address.",),
                 r"send us a letter"),
        ), order_share=0.8, went_wrong=False),
        Intent("password_reset", (
            Fact(r"forgot password",
                 ("Use the Forgot password link on the sign-in page.",
                  "Click Forgot password on the sign-in page."),
                 ("Create a new account instead.",),
                 r"new account"),
            Fact(r"(24|twenty-four)[ -]hours?",
                 ("The reset link is valid for 24 hours.",
                  "The link works for 24 hours."),
                 ("The reset link is valid for 10 minutes.",),
                 r"10 minutes"),
        ), order_share=0.0, went_wrong=True),
        Intent("double_charge", (
            Fact(r"refund(ed)?",
                 ("The duplicate charge will be refunded.",
                  "We are refunding the duplicate charge."),
                 ("Duplicate charges are kept as credit.",),
                 r"kept as credit"),
            Fact(_3_5_DAYS,
                 ("It reaches you within 3-5 business days.",
                  "Expect it within 3 to 5 business days."),
                 ("It takes 30 business days.",),
                 r"30 business days"),
        ), order_share=0.0, went_wrong=True),
        Intent("cancel_subscription", (
            Fact(r"account\s*>\s*subscriptions",
                 ("You can cancel any time under Account > Subscriptions.",
                  "Cancel whenever you like under Account > Subscriptions."),
                 ("You must cancel by post.",),
                 r"by post"),
            Fact(r"no cancellation fee",
                 ("There is no cancellation fee.",
                  "Cancelling has no cancellation fee."),
                 ("There is a 20 dollar cancellation fee.",),
                 r"20 dollar"),
            Fact(r"end of (the|your) (current )?billing period",
                 ("Your benefits last until the end of the billing period.",
                  "You keep Harbor Plus until the end of your billing period."),
                 ("Your benefits stop immediately.",),
                 r"stop immediately"),
        ), order_share=0.0, went_wrong=False),
        Intent("price_match", (
            Fact(r"(14|fourteen) days",
                 ("We price match within 14 days of purchase.",
                  "Price match applies within fourteen days of purchase."),
                 ("Price match applies within 60 days.",),
                 r"(60|sixty) days"),
            Fact(r"refunds? the difference",
                 ("Harbor Goods refunds the difference.",
                  "We will refund the difference to you."),
                 ("We send you a coupon for half the difference.",),
                 r"coupon"),
        ), order_share=0.4, went_wrong=False),
        Intent("contact_hours", (
            Fact(r"live chat.{0,20}24/7|24/7.{0,20}live chat",
                 ("Live chat is open 24/7.",
                  "Our live chat is available 24/7."),
                 ("Live chat is closed on weekends.",),
                 r"closed on weekends"),
            Fact(r"monday\s*(to|-|through)\s*friday",
                 ("Phone support runs Monday to Friday, 9am to 6pm.",
                  "You can call us Monday to Friday, 9 am - 6 pm."),
                 ("Phone support runs Saturdays only.",),
                 r"saturdays only"),
        ), order_share=0.0, went_wrong=False),
        Intent("warranty", (
            Fact(r"\b(1|one)[ -]year\b",
                 ("Electronics carry a 1-year warranty.",
                  "Your electronics are covered by a one year warranty."),
                 ("Electronics carry a 3-month warranty.",),
                 r"3-month"),
            Fact(r"repairs? or replaces?|repair or replace",
                 ("We will repair or replace the item.",
                  "Harbor Goods repairs or replaces it."),
                 ("Repairs are at your own cost.",),
                 r"own cost"),
        ), order_share=0.4, went_wrong=True),
    ]
}

# Phone hours are part of the contact_hours facts; checked by a separate pattern.
CONTACT_HOURS_PATTERN = r"9\s*(am|:00)\s*(to|-|–)\s*(6\s*pm|18:00)"

IMPOLITE_PATTERNS = (
    r"not my problem", r"read the faq", r"calm down", r"whatever", r"your (own )?fault",
    r"deal with it", r"figure it out", r"stop (complaining|whining)",
)

# --- customer messages --------------------------------------------------------------------

# {o}: an order reference; {p}: a product. Each intent's templates are cut into the splits by
# index (TEMPLATE_SPLITS): 9 train, 3 dev (the evaluation split recipes were tuned on before the
# test split existed), 3 test (written with the test split, never tuned on).
CUSTOMER: dict[str, list[str]] = {
    "order_status": [
        "Where is my order {o}?", "Hi, can you tell me when order {o} will arrive?",
        "I ordered a {p} last week and it still hasn't come. Order {o}.",
        "Any update on my order {o}? I'm waiting for my {p}.", "when will my {p} get here",
        "Has my order {o} shipped yet?", "How long does delivery take for order {o}?",
        "I need to know the status of order {o} please.",
        "My {p} has not arrived. Where is it? Order {o}",
        "Can you check on order {o} for me? It is taking forever.",
        "Still waiting on my package. Order {o}. What is going on?",
        "Is my {p} on its way? order number {o}",
        # test
        "Tracking shows nothing for order {o}. When does it arrive?", "My {p} was supposed to arrive by now. Order {o}.", "what's the delivery status of order {o}",
    ],
    "return_refund": [
        "I want to return my {p}.", "How do I get a refund for the {p} I bought?",
        "The {p} doesn't fit, can I send it back? Order {o}.", "i want my money back for the {p}",
        "Can I return order {o}? I changed my mind.", "What is your return policy?",
        "I'd like a refund for my {p}, order {o}.", "How do returns work? I have a {p} I don't need.",
        "I need to send back the {p} and get refunded.",
        "Please help me return order {o}, the {p} is not what I expected.",
        "Can I still return a {p} I got a few weeks ago?",
        "How long does a refund take after I return my {p}?",
        # test
        "Could I send the {p} back for a refund? Order {o}.", "I no longer want the {p}. How do I return it?", "What do I need to do to return a {p}?",
    ],
    "cancel_order": [
        "Please cancel my order {o}.", "I want to cancel order {o}.",
        "Can I cancel the {p} I just ordered? Order {o}.", "cancel order {o} now",
        "I ordered a {p} by mistake, how do I cancel it?", "How can I cancel my order {o}?",
        "I changed my mind about the {p}. Cancel order {o} please.",
        "Is it too late to cancel order {o}?", "I need to cancel my {p} order.",
        "Stop my order {o}, I don't want the {p} anymore.",
        "Can you cancel my order? It's {o}.", "How do I cancel an order I placed today?",
        # test
        "I placed order {o} an hour ago, please cancel it.", "Don't ship order {o}, I want to cancel.", "Can you cancel the {p} before it ships? Order {o}.",
    ],
    "damaged_item": [
        "My {p} arrived broken. Order {o}.", "The {p} I received is damaged.",
        "Order {o} came with a cracked {p}.", "my {p} is defective, order {o}",
        "The box was crushed and the {p} inside is broken.",
        "I got a damaged {p} in order {o}. What now?", "Your {p} arrived in pieces!",
        "The {p} from order {o} doesn't work out of the box.",
        "The {p} is scratched and dented. Order {o}.", "Received a faulty {p}, order number {o}.",
        "My new {p} arrived smashed. Order {o}. Unbelievable.",
        "What do I do if my {p} came damaged?",
        # test
        "The {p} in order {o} arrived with a broken handle.", "Half of my {p} is cracked. It came like that. Order {o}.", "the {p} came damaged in the post",
    ],
    "change_address": [
        "I need to change the delivery address for order {o}.",
        "Can I update the shipping address on my order {o}?", "wrong address on order {o}",
        "I moved. How do I change the address for my {p} order?",
        "Please send order {o} to a different address.",
        "How do I edit my delivery address?", "I typed the wrong address for order {o}.",
        "Can the {p} be delivered to my office instead? Order {o}.",
        "Change the address on order {o} please.",
        "I need my {p} shipped somewhere else. Order {o}.",
        "Is it possible to fix the address on order {o}?",
        "How can I change where my order is delivered?",
        # test
        "Please update the address on order {o}, I gave the old one.", "My {p} is going to the wrong address! Order {o}.", "Can I change the shipping address before order {o} ships?",
    ],
    "password_reset": [
        "I can't sign in to my account.", "I forgot my password.",
        "How do I reset my password?", "cant log in, password not working",
        "My password doesn't work anymore.", "I'm locked out of my account.",
        "The site says my password is wrong.", "Help, I can't access my account.",
        "I need a new password.", "Login keeps failing for me.",
        "I lost my password and can't log in.", "How do I get back into my account?",
        # test
        "The password reset email never came.", "I can't log in to my Harbor Goods account.", "How do I change my password? I forgot it.",
    ],
    "double_charge": [
        "I was charged twice for my order.", "You billed me two times!",
        "There are two charges on my card for one {p}.", "double charged for my {p}",
        "Why did you take my payment twice?", "I see a duplicate charge on my statement.",
        "My card was charged twice for the same order.", "I paid once but you charged me twice.",
        "Two identical charges appeared on my bank account.",
        "You charged me twice for the {p}. Fix it.",
        "I think I was billed twice.", "There is an extra charge for my {p} order.",
        # test
        "My bank shows a duplicate charge from Harbor Goods.", "I was billed twice for one {p}.", "Why are there two charges for a single order?",
    ],
    "cancel_subscription": [
        "I want to cancel my Harbor Plus subscription.", "How do I end Harbor Plus?",
        "Please cancel my subscription.", "stop my harbor plus membership",
        "Is there a fee to cancel Harbor Plus?", "I don't want Harbor Plus anymore.",
        "How can I unsubscribe from Harbor Plus?", "Cancel my Harbor Plus plan please.",
        "I'd like to end my membership.", "Can I cancel Harbor Plus at any time?",
        "How do I stop paying for Harbor Plus?", "I want out of the Harbor Plus subscription.",
        # test
        "Please end my Harbor Plus membership.", "How do I turn off Harbor Plus auto-renewal?", "Will I lose Harbor Plus right away if I cancel?",
    ],
    "price_match": [
        "I saw the {p} cheaper somewhere else.", "Do you price match?",
        "The {p} I bought is now on sale. Can I get the difference?",
        "another store sells the {p} for less", "Can you match a lower price for my {p}?",
        "I found a lower price for the {p} I ordered. Order {o}.",
        "The price of my {p} dropped after I bought it.", "Do you offer price matching?",
        "I paid too much for the {p}, it's cheaper now.",
        "Will you refund the difference if the {p} is cheaper elsewhere?",
        "Is there a price guarantee on the {p}?", "The {p} went down in price. Order {o}.",
        # test
        "Your competitor has the {p} for less. Can you match it?", "The {p} is on sale now, can I get the difference back? Order {o}.", "Do you match prices from other shops?",
    ],
    "contact_hours": [
        "How can I talk to a person?", "What are your support hours?",
        "When can I call you?", "is there a phone number",
        "Can I speak to someone?", "When is customer service open?",
        "I want to talk to a real human.", "What time does your phone line open?",
        "How do I reach customer support?", "Is support open on weekends?",
        "Do you have live chat?", "When are you available to help?",
        # test
        "Is your phone line open on Saturday?", "I'd like to speak to an agent. When can I?", "How late is customer service open?",
    ],
    "warranty": [
        "My {p} stopped working.", "Is my {p} under warranty?",
        "The {p} died after two months.", "my {p} wont turn on anymore",
        "What warranty do your electronics have?", "My {p} broke after a few weeks. Order {o}.",
        "The {p} stopped charging.", "Does the {p} come with a warranty?",
        "My {p} is not working, what can you do?", "The screen on my {p} went black.",
        "My {p} quit working. Order {o}.", "Can you fix my {p}? It stopped working.",
        # test
        "My {p} is not working anymore after a month.", "Is the {p} covered by a warranty? It died.", "The {p} stopped working after three months. Order {o}.",
    ],
}
SPLITS = ("train", "dev", "test")
TEMPLATE_SPLITS = {"train": slice(0, 9), "dev": slice(9, 12), "test": slice(12, 15)}
ORDER_NUMBERS = {"train": (10000, 69999), "dev": (70000, 84999), "test": (85000, 99999)}

TRAIN_PRODUCTS = (
    "lamp", "kettle", "backpack", "desk chair", "blender", "rain jacket", "toaster",
    "headphones", "yoga mat", "coffee maker", "phone charger", "bookshelf", "duvet",
    "water bottle", "keyboard", "speaker", "tent", "frying pan", "laptop stand", "mirror",
)
DEV_PRODUCTS = (
    "air fryer", "sleeping bag", "monitor", "picture frame", "smartwatch", "rug",
    "hair dryer", "bike light", "camera", "mug set",
)
TEST_PRODUCTS = (
    "tablet", "vacuum cleaner", "wall clock", "printer", "sofa cushion", "ski goggles",
    "board game", "garden hose", "electric toothbrush", "bread maker",
)
PRODUCTS = {"train": TRAIN_PRODUCTS, "dev": DEV_PRODUCTS, "test": TEST_PRODUCTS}

ANGRY_PREFIX = ("This is ridiculous. ", "I am really upset. ", "Seriously?! ", "Third time asking. ")

# --- reply parts (house tone and others) --------------------------------------------------

GREETING = (
    "Thank you for reaching out to Harbor Goods.", "Hi, and thanks for contacting us.",
    "Hello, thank you for your message.", "Thanks for getting in touch.",
)
APOLOGY = (
    "I'm sorry about this.", "I'm sorry for the trouble.",
    "I understand how frustrating this is, and I apologise.",
)
ORDER_LEAD = ("I have looked up order {o}.", "Thanks for the order number, {o}.", "About order {o}:")
ASK_ORDER = (
    "Could you send me your order number so I can check?",
    "If you share your order number, I can look into it.",
)
OFFER_HELP = (
    "Is there anything else I can help you with?",
    "Let me know if there is anything else I can do for you.",
    "Happy to help with anything else.",
)
RUDE_OPEN = ("Not my problem, but fine.", "Read the FAQ next time.", "Look, calm down.", "Ugh.")
RUDE_CLOSE = ("Whatever.", "Deal with it.", "DON'T ASK AGAIN.", "Figure it out.")
CURT_OPEN = ("OK.", "Fine.", "Right.")
NEUTRAL_OPEN = ("Hello.", "Noted.", "Understood.")
PADDING = (
    "I am so very sorry. We sincerely apologise for any inconvenience. We truly, deeply apologise.",
    "Please accept our most heartfelt apologies, we are terribly, terribly sorry for this.",
)
FILLER = (
    "As a valued customer, your satisfaction is our top priority and we always strive to do our very best for you.",
    "We really appreciate your patience and understanding, and we value you enormously as a customer.",
)
VAGUE = ("We will look into it and get back to you.", "Someone will check this eventually.")
# Filler no training row contains: the reward model's length-bias probe pads with these, so a
# model that learned to dislike the training filler strings cannot pass it by recognising them.
PROBE_FILLER = (
    "Our team works hard every single day to make sure shopping with us stays a pleasant experience.",
    "We are always glad to hear from the people who shop with us and we read every message carefully.",
)

# --- generation ---------------------------------------------------------------------------


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown Harbor Goods split {split!r}; splits: {', '.join(SPLITS)}")


def _order_number(rng: random.Random, split: str) -> str:
    low, high = ORDER_NUMBERS[split]
    return str(rng.randint(low, high))


def _typo(rng: random.Random, text: str) -> str:
    """Swap two neighbouring letters in one word, as a hurried customer would."""
    words = text.split(" ")
    idx = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if not idx:
        return text
    i = rng.choice(idx)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


@dataclass(frozen=True)
class Case:
    """One customer contact: what the generator knows about it."""

    intent: str
    message: str
    order: str | None  # the order number the customer gave, as digits
    angry: bool
    template: int  # index into CUSTOMER[intent]: the cluster a test statistic resamples


def make_case(rng: random.Random, intent: str, split: str) -> Case:
    _check_split(split)
    templates = CUSTOMER[intent]
    index = rng.choice(range(len(templates))[TEMPLATE_SPLITS[split]])
    template = templates[index]
    wants_order = "{o}" in template
    if not wants_order and rng.random() < INTENTS[intent].order_share * 0.3:
        template += " Order {o}."
        wants_order = True
    order = _order_number(rng, split) if wants_order else None
    ref = (rng.choice(("#", "")) + order) if order else ""
    product = rng.choice(PRODUCTS[split])
    text = template.format(o=ref, p=product)
    angry = rng.random() < 0.25
    if angry:
        text = rng.choice(ANGRY_PREFIX) + text
    if rng.random() < 0.15:
        text = _typo(rng, text)
    if rng.random() < 0.15:
        text = text.lower()
    return Case(intent, text, order, angry, index)


def _order_ref(rng: random.Random, order: str) -> str:
    return rng.choice(("#", "")) + order


def _fact_sentences(rng: random.Random, intent: Intent, wrong: set[int] = frozenset()) -> list[str]:
    return [rng.choice(f.wrong if i in wrong else f.says) for i, f in enumerate(intent.facts)]


def house_reply(rng: random.Random, case: Case, body: list[str] | None = None) -> str:
    """A reply in the house tone: greeting, apology where due, the order number, the body (by default
    every fact of the intent: the SFT target and `chosen`), a request for the order number where the
    intent needs one, an offer of further help."""
    intent = INTENTS[case.intent]
    parts = [rng.choice(GREETING)]
    if intent.went_wrong or case.angry or went_wrong(case.message):
        parts.append(rng.choice(APOLOGY))
    if case.order:
        parts.append(rng.choice(ORDER_LEAD).format(o=_order_ref(rng, case.order)))
    parts += _fact_sentences(rng, intent) if body is None else body
    if case.order is None and intent.order_share >= 0.8:
        parts.append(rng.choice(ASK_ORDER))
    parts.append(rng.choice(OFFER_HELP))
    return " ".join(parts)


REJECTION_KINDS = ("tone", "facts", "both", "padding", "other_intent")


def rejected_reply(rng: random.Random, case: Case, kind: str) -> str:
    """A worse reply of one labelled kind. `facts` and `other_intent` are in the house tone (greeting,
    apology where due, offer of help), so a pair can only be told apart by reading the facts:
      tone          rude or dismissive, facts right
      facts         house tone, one fact invented or all of them missing
      both          rude, one fact invented
      padding       facts right, drowned in apology and filler
      other_intent  house tone, the facts of another intent: a polite answer to another question
    """
    intent = INTENTS[case.intent]
    n = len(intent.facts)
    wrong = {rng.randrange(n)}
    lead = [rng.choice(ORDER_LEAD).format(o=_order_ref(rng, case.order))] if case.order else []
    if kind == "tone":
        return " ".join([rng.choice(RUDE_OPEN), *lead, *_fact_sentences(rng, intent), rng.choice(RUDE_CLOSE)])
    if kind == "facts":
        body = _fact_sentences(rng, intent, wrong) if rng.random() < 0.7 else [rng.choice(VAGUE)]
        return house_reply(rng, case, body)
    if kind == "both":
        return " ".join([rng.choice(RUDE_OPEN), *_fact_sentences(rng, intent, wrong), rng.choice(RUDE_CLOSE)])
    if kind == "padding":
        return " ".join([rng.choice(GREETING), *PADDING, *lead, *_fact_sentences(rng, intent),
                         rng.choice(FILLER), rng.choice(FILLER), rng.choice(OFFER_HELP)])
    if kind == "other_intent":
        other = rng.choice(sorted(set(INTENTS) - {case.intent}))
        return house_reply(rng, case, _fact_sentences(rng, INTENTS[other]))
    raise ValueError(f"unknown rejection kind {kind!r}; known: {', '.join(REJECTION_KINDS)}")


def pretrain_reply(rng: random.Random, case: Case) -> str:
    """Mixed tone (polite, neutral, curt) and one fact only: in the domain, not yet aligned."""
    intent = INTENTS[case.intent]
    fact = rng.choice(intent.facts)
    tone = rng.choice(("polite", "neutral", "curt"))
    lead = [rng.choice(ORDER_LEAD).format(o=_order_ref(rng, case.order))] if case.order else []
    if tone == "polite":
        return " ".join([rng.choice(GREETING), *lead, rng.choice(fact.says)])
    if tone == "neutral":
        return " ".join([rng.choice(NEUTRAL_OPEN), *lead, rng.choice(fact.says)])
    return " ".join([rng.choice(CURT_OPEN), rng.choice(fact.says)])


def required_patterns(case: Case) -> list[str]:
    intent = INTENTS[case.intent]
    patterns = [f.pattern for f in intent.facts]
    if case.intent == "contact_hours":
        patterns.append(CONTACT_HOURS_PATTERN)
    if case.order:
        patterns.append(rf"(?<!\d){case.order}(?!\d)")
    return patterns


def forbidden_patterns(case: Case) -> list[str]:
    return list(IMPOLITE_PATTERNS) + [f.wrong_pattern for f in INTENTS[case.intent].facts]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _cases(seed: int, n: int, split: str, stream: str) -> list[tuple[random.Random, Case]]:
    """n cases of one split cycling through the intents, each with its own seeded generator."""
    names = sorted(INTENTS)
    rng = random.Random(f"harbor-{stream}-{seed}")
    out = []
    for i in range(n):
        case_rng = random.Random(rng.getrandbits(64))
        out.append((case_rng, make_case(case_rng, names[i % len(names)], split)))
    return out


def sft_rows(seed: int, n: int, split: str = "train", stream: str = "sft") -> list[dict]:
    return [{"messages": _user(c.message) + _assistant(house_reply(r, c))} for r, c in _cases(seed, n, split, stream)]


def pair_rows(seed: int, n: int, split: str = "train", stream: str = "pairs") -> list[dict]:
    rows = []
    for i, (r, c) in enumerate(_cases(seed, n, split, stream)):
        kind = REJECTION_KINDS[(i // len(INTENTS)) % len(REJECTION_KINDS)]
        rows.append({"prompt": _user(c.message), "chosen": _assistant(house_reply(r, c)),
                     "rejected": _assistant(rejected_reply(r, c, kind)), "kind": kind, "intent": c.intent})
    return rows


def prompt_rows(seed: int, n: int, split: str = "train", stream: str = "prompts") -> list[dict]:
    return [{"prompt": _user(c.message), "intent": c.intent, "order": c.order}
            for _, c in _cases(seed, n, split, stream)]


def task_rows(seed: int, n: int, split: str) -> list[dict]:
    """Tasks (the tasks-file contract) of the dev or test split; `cluster` names the customer template,
    so intervals resample templates, not tasks drawn from the same template."""
    if split == "train":
        raise ValueError("tasks come from the dev or test split, never from train")
    rows = []
    for i, (r, c) in enumerate(_cases(seed, n, split, f"tasks-{split}")):
        rows.append({"id": f"harbor-{split}-{i:04d}", "intent": c.intent, "cluster": f"{c.intent}/{c.template}",
                     "messages": _user(c.message), "required": required_patterns(c),
                     "forbidden": forbidden_patterns(c), "reference": house_reply(r, c)})
    return rows


def pretrain_rows(seed: int, n: int) -> list[dict]:
    return [{"messages": _user(c.message) + _assistant(pretrain_reply(r, c))}
            for r, c in _cases(seed, n, "train", "pretrain")]
