#!/usr/bin/env python3
"""Generate the Fernhollow Outfitters customer-service Q/A dataset from datasets/retail/store_facts.json.

Writes, under datasets/retail/ (or --out):
  qa_train.jsonl, qa_heldout.jsonl          chat form: {"messages": [system, user, assistant], "answer", "topic", "fact_id"}
  alpaca_train.jsonl, alpaca_heldout.jsonl  Alpaca form: {"instruction", "input", "output", "answer", "topic", "fact_id"}
  faq.txt                                   plain text: one short FAQ passage per fact, one per line
  stats.json                                counts per topic and split

Every fact has one short assistant answer (containing the canonical `answer` string) and several
phrasings of the question. For each fact with at least 5 phrasings exactly one phrasing, picked by a
seeded RNG, goes to the held-out split; the others go to training. So every held-out question asks
about a fact the training split teaches, in words the training split never uses.

Deterministic: no argument changes the output except --out. Standard library only.
Usage: python tools/make_retail_qa.py [--out DIR]
"""
import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "datasets" / "retail" / "store_facts.json"
SEED = "fernhollow-qa-v1"
MIN_PHRASINGS_FOR_HELDOUT = 5


class Fact:
    def __init__(self, fact_id, topic, answer, response, questions):
        assert answer in response, f"{fact_id}: canonical answer {answer!r} not in {response!r}"
        assert len(set(questions)) == len(questions), f"{fact_id}: duplicate phrasing"
        self.id, self.topic, self.answer, self.response, self.questions = (
            fact_id, topic, answer, response, questions)


def cap(s):
    return s[0].upper() + s[1:]


def policy_facts(f):
    s = f["store"]
    name = s["name"]
    r, rf, ex, sh, intl = f["returns"], f["refunds"], f["exchanges"], f["shipping"], f["international"]
    tr, od, hr, pay, gc = f["tracking"], f["orders"], f["hours"], f["payment"], f["gift_cards"]
    pm, mb, wr = f["price_match"], f["membership"], f["warranty"]
    std, expd, ovn = sh["options"]
    days = f"{r['window_days']} days"
    facts = [
        # ---- returns ----
        Fact("returns_window", "returns", days,
             f"You can return items within {days} of {r['window_start']}.",
             ["How long do I have to return something?", "What is your return window?",
              "How many days do I have to send an item back?", "Is there a time limit on returns?",
              "Can I still return a jacket I bought five weeks ago?", "What's the deadline for returning an order?",
              "How long is your return policy?"]),
        Fact("returns_condition", "returns", "unworn and unwashed",
             f"Returned items must be {r['condition']}.",
             ["What condition do returns need to be in?", "Can I return something I've already worn?",
              "Do items need their tags to be returned?", "Will you accept a return of a washed shirt?",
              "What are the requirements for an item to be returnable?", "Do I need to keep the tags on for a return?"]),
        Fact("returns_shipping_cost", "returns", "free",
             f"Return shipping is {r['return_shipping']}.",
             ["Do I have to pay for return shipping?", "Is return shipping free?",
              "How much does it cost to mail a return back?", "Who pays the postage on returns?",
              "Will you send me a prepaid return label?", "Is there a charge to ship my return?"]),
        Fact("returns_in_store", "returns", "any Fernhollow store",
             f"Yes, {r['in_store']}.",
             ["Can I return an online order in a store?", "Can I bring my web order back to a shop?",
              "Do your stores accept returns of things I bought online?", "Is it possible to return an online purchase at a retail location?",
              "I ordered on the website; can I return it at the Boulder store?", "Can online purchases be returned in person?"]),
        Fact("returns_restocking_fee", "returns", "no restocking fee",
             "There is no restocking fee on returns.",
             ["Do you charge a restocking fee?", "Is there a fee for returning an item?",
              "Will I be charged anything to return my order?", "Are there restocking charges on returns?",
              "Do you deduct a fee from return refunds?", "Is there any penalty for sending something back?"]),
        Fact("returns_final_sale", "returns", "Final Sale",
             f"These can't be returned: {r['final_sale']}.",
             ["Which items can't be returned?", "Are clearance items returnable?",
              "Can I return a gift card?", "Is anything excluded from your return policy?",
              "Are some products final sale?", "What can't I send back?"]),
        Fact("returns_no_receipt", "returns", "store credit",
             f"Without a receipt or order number we can offer {r['no_receipt']}.",
             ["Can I return something without a receipt?", "I lost my receipt, can I still make a return?",
              "What happens if I don't have proof of purchase?", "Do you take returns with no receipt?",
              "I don't have my order number; can I still return an item?", "No receipt returns, are they possible?"]),
        Fact("returns_footwear", "returns", "worn indoors",
             f"Yes, {r['used_footwear']}.",
             ["Can I return shoes I've tried on?", "Can I send back boots if they don't fit?",
              "What's the return policy for footwear?", "Are worn hiking boots returnable?",
              "I wore my trail runners around the house, can I still return them?", "Do shoes have a different return rule?"]),
        # ---- refunds ----
        Fact("refunds_timing", "refunds", rf["timing"],
             f"Refunds are issued within {rf['timing']} {rf['timing_start']}.",
             ["How long does a refund take?", "When will I get my money back?",
              "How soon is my refund processed?", "How many days until my refund shows up?",
              "I returned an item, when do I see the refund?", "What's the refund processing time?",
              "How quickly do you refund returns?"]),
        Fact("refunds_method", "refunds", rf["method"],
             f"Refunds go back to {rf['method']}.",
             ["How will I be refunded?", "Where does my refund go?",
              "Do refunds go back to my credit card?", "Will I get cash or store credit for a return?",
              "What payment method is my refund issued to?", "I paid with PayPal; how do I get my refund?"]),
        Fact("refunds_gift", "refunds", "store credit",
             f"Returned gifts are refunded as {rf['gift_returns']}.",
             ["How are returned gifts refunded?", "I got this as a gift, what do I get if I return it?",
              "Can I return a present without the buyer finding out?", "What happens when someone returns a gift?",
              "Do gift returns get money back or credit?", "If I return a gift, is the refund sent to the giver?"]),
        Fact("refunds_shipping", "refunds", "damaged or was sent in error",
             f"Original shipping is refunded only if the item arrived damaged or was sent in error.",
             ["Do you refund the shipping cost?", "Will I get my shipping fee back when I return something?",
              "Is original shipping refundable?", "When do you refund delivery charges?",
              "Do refunds include what I paid for shipping?", "Can I get the shipping charge refunded?"]),
        # ---- exchanges ----
        Fact("exchanges_how", "exchanges", "Returns page",
             f"To exchange, {ex['how']}; exchange shipping is {ex['shipping']}.",
             ["How do I exchange an item?", "Can I swap my jacket for a different size?",
              "What's the process for an exchange?", "I need a bigger size, how do I exchange it?",
              "How can I trade an item for another color?", "Where do I start an exchange?"]),
        Fact("exchanges_shipping", "exchanges", "free, both ways",
             f"Exchange shipping is {ex['shipping']}.",
             ["Is shipping free on exchanges?", "Do I pay postage for an exchange?",
              "Does an exchange cost anything to ship?", "Who covers shipping when I exchange a size?",
              "Are exchanges shipped for free?", "Do I have to pay to ship the replacement?"]),
        Fact("exchanges_speed", "exchanges", "scanned by the carrier",
             f"The replacement ships as soon as your return label is scanned by the carrier.",
             ["When does my exchange item ship?", "How fast do you send the replacement in an exchange?",
              "Do I have to wait for you to receive my return before the exchange ships?", "How long does an exchange take?",
              "When will my new size be sent out?", "Is the replacement sent before you get my return?"]),
        # ---- shipping ----
        Fact("shipping_free_threshold", "shipping", sh["free_threshold"],
             f"Standard shipping is free on US orders over {sh['free_threshold']}.",
             ["Do you offer free shipping?", "How much do I need to spend for free shipping?",
              "What's the minimum order for free delivery?", "Is shipping free over a certain amount?",
              "When do I qualify for free shipping?", "Free shipping threshold?", "How do I get free shipping?"]),
        Fact("shipping_standard_price", "shipping", std["price"],
             f"Standard shipping costs {std['price']} (free on US orders over {sh['free_threshold']}).",
             ["How much is standard shipping?", "What does regular shipping cost?",
              "What's the price of your cheapest shipping?", "Standard shipping cost?",
              "How much do you charge for ground shipping?", "What's the standard delivery fee?"]),
        Fact("shipping_standard_time", "shipping", std["time"],
             f"Standard shipping takes {std['time']}.",
             ["How long does standard shipping take?", "How many days is regular delivery?",
              "When will a standard order arrive?", "What's the transit time for standard shipping?",
              "Standard delivery time?", "How fast is your normal shipping?"]),
        Fact("shipping_expedited_price", "shipping", expd["price"],
             f"Expedited shipping costs {expd['price']}.",
             ["How much is expedited shipping?", "What does faster shipping cost?",
              "What's the fee for expedited delivery?", "Expedited shipping price?",
              "How much extra is expedited?", "What do you charge to rush my order, short of overnight?"]),
        Fact("shipping_expedited_time", "shipping", expd["time"],
             f"Expedited shipping takes {expd['time']}.",
             ["How long does expedited shipping take?", "How quick is expedited delivery?",
              "How many days is expedited?", "When will an expedited order arrive?",
              "Expedited delivery time?", "Is expedited a two or three day service?"]),
        Fact("shipping_overnight_price", "shipping", ovn["price"],
             f"Overnight shipping costs {ovn['price']}.",
             ["How much is overnight shipping?", "What does next-day delivery cost?",
              "Do you offer overnight shipping, and at what price?", "Overnight shipping price?",
              "What's the fee for next-day shipping?", "How much would it cost to get my order tomorrow?"]),
        Fact("shipping_overnight_cutoff", "shipping", "1 PM Eastern",
             f"Overnight orders placed by 1 PM Eastern arrive the next business day.",
             ["What's the cutoff for overnight shipping?", "By what time must I order for next-day delivery?",
              "If I order this afternoon, will overnight arrive tomorrow?", "What time is the overnight order deadline?",
              "When do I need to order to get it the next day?", "Overnight shipping cutoff time?"]),
        Fact("shipping_processing", "shipping", sh["processing_time"],
             f"Orders are processed and shipped within {sh['processing_time']}.",
             ["How long before my order ships?", "What is your order processing time?",
              "When will you ship my order?", "How quickly do orders leave the warehouse?",
              "How long does it take you to pack and send an order?", "How soon after I order does it ship?"]),
        Fact("shipping_carriers", "shipping", sh["carriers"],
             f"We ship with {sh['carriers']}.",
             ["Which carriers do you use?", "Do you ship with UPS or FedEx?",
              "Who delivers your packages?", "What shipping companies do you work with?",
              "Which courier will bring my order?", "Do you use USPS?"]),
        Fact("shipping_po_box", "shipping", "Standard shipping only",
             f"We ship to PO boxes with {sh['po_boxes']}.",
             ["Can you ship to a PO box?", "Do you deliver to post office boxes?",
              "I only have a P.O. box, can I still order?", "What shipping is available for PO boxes?",
              "Can expedited orders go to a PO box?", "Is PO box delivery possible?"]),
        Fact("shipping_alaska_hawaii", "shipping", "7 to 10 business days",
             f"Alaska and Hawaii get {sh['alaska_hawaii']}.",
             ["Do you ship to Hawaii?", "How long does shipping to Alaska take?",
              "Is delivery to Alaska and Hawaii available?", "What shipping options do I have in Honolulu?",
              "Can I get overnight shipping to Anchorage?", "Shipping time to Hawaii?"]),
        Fact("shipping_store_pickup", "shipping", "ready in 2 hours",
             f"In-store pickup is {sh['store_pickup']}.",
             ["Can I buy online and pick up in store?", "Do you offer store pickup?",
              "How soon is a pickup order ready?", "Is in-store pickup free?",
              "Can I collect my online order at a shop?", "How does buy online, pick up in store work?"]),
        # ---- international ----
        Fact("international_countries", "international", "Canada",
             f"We ship to {intl['countries']}.",
             ["Do you ship internationally?", "Which countries do you ship to?",
              "Can I order from Canada?", "Do you deliver to the UK?",
              "Is international shipping available?", "Can you send an order to Australia?",
              "Where outside the US do you ship?"]),
        Fact("international_cost", "international", "$24.95",
             f"International shipping is {intl['price']}, and free on orders over {intl['free_threshold']}.",
             ["How much is international shipping?", "What does it cost to ship to Canada?",
              "Is there free international shipping?", "What's the flat rate for international orders?",
              "What's the shipping fee to Japan?", "International shipping price?"]),
        Fact("international_time", "international", intl["time"],
             f"International delivery takes {intl['time']}.",
             ["How long does international delivery take?", "How many days to ship to the UK?",
              "When will my order to Australia arrive?", "What's the transit time for international orders?",
              "International shipping time?", "How long does it take to deliver to Mexico?"]),
        Fact("international_duties", "international", "nothing to pay on delivery",
             f"{cap(intl['duties'])}.",
             ["Will I have to pay customs duties?", "Are import taxes included?",
              "Do I pay duties when the package arrives?", "Who pays VAT on international orders?",
              "Will there be extra fees at delivery for my UK order?", "How are duties and taxes handled?"]),
        # ---- tracking / orders ----
        Fact("tracking_how", "tracking", "tracking link",
             f"You'll get {tr['email']}; you can also use {tr['order_status_page']}.",
             ["How can I track my order?", "Where do I find my tracking number?",
              "How do I check where my package is?", "Is there a way to follow my shipment?",
              "Will I get tracking information?", "How do I see my order status?", "Where's my order?"]),
        Fact("tracking_order_number", "tracking", "FH- followed by 8 digits",
             f"Order numbers are {tr['order_number_format']}; you'll find yours in the confirmation email.",
             ["What does an order number look like?", "Where do I find my order number?",
              "What format are your order numbers?", "How many digits is the order number?",
              "I can't find my order number, what should I look for?", "What does the order ID start with?"]),
        Fact("tracking_not_updating", "tracking", "24 hours",
             f"Tracking can take up to 24 hours to update after the label is created.",
             ["My tracking number isn't working, why?", "Why hasn't my tracking updated?",
              "Tracking says label created but nothing else, is that normal?", "The tracking link shows no information yet.",
              "How long until tracking shows movement?", "Why does my tracking say not found?"]),
        Fact("tracking_lost", "tracking", "5 business days",
             f"If tracking hasn't moved for 5 business days, contact us and we will reship or refund.",
             ["My package seems lost, what do I do?", "Tracking hasn't changed in a week, can you help?",
              "What if my order never arrives?", "How long before a package counts as lost?",
              "My parcel is stuck in transit, what now?", "Do you replace lost packages?"]),
        Fact("orders_cancel", "orders", od["cancel_window"],
             f"You can cancel an order within {od['cancel_window']} of placing it.",
             ["Can I cancel my order?", "How long do I have to cancel an order?",
              "I ordered the wrong thing, can I still cancel?", "Is there a cancellation window?",
              "Can I cancel after I've paid?", "How soon must I cancel an order?"]),
        Fact("orders_change_address", "orders", "within 1 hour",
             f"You can change the shipping address {od['change_address']}.",
             ["Can I change my shipping address after ordering?", "I entered the wrong address, can you fix it?",
              "How do I update the delivery address on my order?", "Is it too late to change where my order ships?",
              "Can you redirect my order to a different address?", "I moved, can I edit the address on my order?"]),
        Fact("orders_guest", "orders", "guest checkout",
             f"No account is needed; guest checkout is available.",
             ["Do I need an account to order?", "Can I check out as a guest?",
              "Is registration required to buy something?", "Can I order without signing up?",
              "Do I have to create an account to place an order?", "Is guest checkout available?"]),
        # ---- payment ----
        Fact("payment_methods", "payment", "Visa",
             "We accept " + ", ".join(pay["accepted"][:-1]) + " and " + pay["accepted"][-1] + ".",
             ["What payment methods do you accept?", "How can I pay for my order?",
              "Which forms of payment do you take?", "What are my payment options?",
              "What ways can I pay?", "Payment methods?"]),
        Fact("payment_cards", "payment", "Visa, Mastercard, American Express and Discover",
             "We accept Visa, Mastercard, American Express and Discover.",
             ["Which cards do you accept?", "Do you take American Express?",
              "Is Discover accepted?", "Can I pay with a Mastercard?",
              "Do you take credit cards?", "Which credit cards work on your site?"]),
        Fact("payment_wallets", "payment", "PayPal, Apple Pay and Google Pay",
             "Yes, we accept PayPal, Apple Pay and Google Pay.",
             ["Can I use Apple Pay?", "Do you accept Google Pay?", "Can I pay with PayPal?",
              "Are digital wallets accepted?", "Do you take mobile payments?", "Is PayPal an option at checkout?"]),
        Fact("payment_cash", "payment", "in stores only",
             f"Cash is accepted in stores only.",
             ["Can I pay with cash?", "Do you take cash online?",
              "Is cash accepted?", "Can I pay cash on delivery?",
              "Do your shops accept cash?", "Can I use cash to pay?"]),
        Fact("payment_not_accepted", "payment", "personal checks",
             f"We don't accept {pay['not_accepted']}.",
             ["Do you accept checks?", "Can I pay with Bitcoin?",
              "Which payment methods don't you take?", "Can I write a check for my purchase?",
              "Do you take crypto?", "Is there any payment you refuse?"]),
        Fact("payment_installments", "payment", "4 interest-free payments",
             f"Yes, with {pay['installments']}.",
             ["Can I pay in installments?", "Do you offer buy now, pay later?",
              "Is Klarna available?", "Can I split my payment?",
              "Do you have a payment plan?", "Can I pay for a tent over time?"]),
        Fact("payment_charged_when", "payment", "when the order ships",
             f"Your card is charged {pay['charged_when'].split('charged ')[1]}.",
             ["When will my card be charged?", "Do you charge me when I order or when it ships?",
              "When is payment taken?", "Why haven't I been charged yet?",
              "At what point is my card billed?", "When does the charge go through?"]),
        # ---- gift cards ----
        Fact("gift_cards_amounts", "gift_cards", gc["amounts"],
             f"Gift cards come in amounts from {gc['amounts']}.",
             ["What amounts do gift cards come in?", "How much can I put on a gift card?",
              "What's the maximum gift card value?", "What's the smallest gift card I can buy?",
              "Gift card denominations?", "Can I buy a $300 gift card?"]),
        Fact("gift_cards_expiration", "gift_cards", "never expire",
             f"Our gift cards never expire and have {gc['fees']}.",
             ["Do gift cards expire?", "Is there an expiration date on gift cards?",
              "How long is a gift card valid?", "Will my gift card ever expire?",
              "My gift card is three years old, is it still good?", "Do your gift cards lose value over time?"]),
        Fact("gift_cards_digital", "gift_cards", "within 1 hour",
             f"Yes, {gc['digital']}.",
             ["Do you sell e-gift cards?", "Can I send a gift card by email?",
              "How fast does a digital gift card arrive?", "Is there an electronic gift card?",
              "Can I buy a last-minute gift card online?", "How are e-gift cards delivered?"]),
        Fact("gift_cards_balance", "gift_cards", "fernhollow.example/giftcard",
             f"You can {gc['balance']}.",
             ["How do I check my gift card balance?", "Where can I see how much is left on my gift card?",
              "Can I look up a gift card balance online?", "How much is on my gift card?",
              "Is there a gift card balance checker?", "How do I find my remaining gift card amount?"]),
        Fact("gift_cards_lost", "gift_cards", "purchase receipt",
             f"A lost physical gift card can be replaced with its purchase receipt.",
             ["I lost my gift card, can you replace it?", "What happens if my gift card is stolen?",
              "Can a lost gift card be recovered?", "Is a misplaced gift card replaceable?",
              "I can't find my gift card, what can I do?", "Do you reissue lost gift cards?"]),
        # ---- price match ----
        Fact("price_match_policy", "price_match", "authorized US retailer",
             f"Yes, {pm['policy']}.",
             ["Do you price match?", "Will you match a competitor's price?",
              "I found it cheaper elsewhere, can you match it?", "What's your price matching policy?",
              "Can you beat another store's price?", "Do you honor lower prices from other retailers?"]),
        Fact("price_match_window", "price_match", "14 days",
             f"If our own price drops within {pm['window_days']} days of your purchase, we refund the difference.",
             ["The price dropped after I bought it, can I get the difference?", "Do you offer price adjustments?",
              "It went on sale a week after I bought it, what can you do?", "How long after buying can I get a price adjustment?",
              "Is there a price protection period?", "Will you refund the difference if something goes on sale?"]),
        Fact("price_match_exclusions", "price_match", "marketplace sellers",
             f"We don't match {pm['exclusions']}.",
             ["What's excluded from price matching?", "Will you match an Amazon marketplace seller?",
              "Do you match Black Friday deals?", "Can you match a clearance price?",
              "Which prices won't you match?", "Do you match coupon prices?"]),
        # ---- membership ----
        Fact("membership_program", "membership", mb["program"],
             f"Our loyalty program is {mb['program']}, and it's {mb['cost']}.",
             ["Do you have a rewards program?", "Is there a loyalty program?",
              "What's the name of your loyalty program?", "What's your membership program called?",
              "What is Trailhead Rewards?", "Do you have a points club?"]),
        Fact("membership_cost", "membership", mb["cost"],
             f"{mb['program']} is {mb['cost']}.",
             ["How much does membership cost?", "Is it free to join your rewards?",
              "Is there a fee for Trailhead Rewards?", "Do I have to pay to become a member?",
              "What does it cost to join the loyalty program?", "Is the rewards program free?"]),
        Fact("membership_redemption", "membership", "$5 reward",
             f"Every 100 points becomes a $5 reward.",
             ["How much are points worth?", "How do I redeem my points?",
              "How many points do I need for a reward?", "What is 100 points worth?",
              "How do rewards points convert to dollars?", "When do my points turn into a reward?"]),
        Fact("membership_expiry", "membership", "12 months",
             f"Points expire {mb['points_expire']}, and rewards expire {mb['rewards_expire']}.",
             ["Do my points expire?", "How long do rewards points last?",
              "When do rewards expire?", "Will I lose my points if I don't shop?",
              "Is there an expiration on loyalty points?", "How long can I keep my points?"]),
        Fact("membership_tiers", "membership", "Sprout, Canopy and Summit",
             f"There are three tiers: Sprout, Canopy and Summit.",
             ["What are the membership tiers?", "How many rewards levels are there?",
              "What levels does Trailhead Rewards have?", "Tell me the names of the tiers.",
              "Are there different member levels?", "Which tiers can I reach?"]),
    ]
    for t in mb["tiers"]:
        n = t["name"]
        facts.append(Fact(f"membership_{n.lower()}_qualify", "membership", t["qualify"],
                          f"{n} status is {t['qualify']}.",
                          [f"How do I reach {n} tier?", f"What does {n} status require?",
                           f"How do I qualify for {n}?", f"How much do I need to spend to be {n}?",
                           f"{n} tier requirements?", f"When do I become a {n} member?"]))
        facts.append(Fact(f"membership_{n.lower()}_points", "membership", t["points_per_dollar"],
                          f"{n} members earn {t['points_per_dollar']} spent.",
                          [f"How many points per dollar do {n} members earn?", f"What's the points rate for {n}?",
                           f"How fast do {n} members earn points?", f"{n} earning rate?",
                           f"How many points do I get per dollar as a {n} member?", f"What do {n} members earn on purchases?"]))
        perk = re.split(r", | and ", t["perks"])[0]
        facts.append(Fact(f"membership_{n.lower()}_perks", "membership", perk,
                          f"{n} perks: {t['perks']}.",
                          [f"What are the {n} benefits?", f"What perks come with {n}?",
                           f"What do I get as a {n} member?", f"{n} tier perks?",
                           f"Are there special benefits for {n} members?", f"Tell me about the {n} tier benefits."]))
    facts += [
        # ---- warranty ----
        Fact("warranty_length", "warranty", wr["length"],
             f"Fernhollow-brand products are covered for {wr['length']} by {wr['name']}.",
             ["How long is your warranty?", "Do your products have a warranty?",
              "What's the warranty period on a jacket?", "Is there a guarantee on Fernhollow gear?",
              "How many years of warranty do I get?", "What is the Fernhollow Gear Promise?"]),
        Fact("warranty_coverage", "warranty", "defects in materials and workmanship",
             f"The warranty covers {wr['covers']}, but not {wr['excludes']}.",
             ["What does the warranty cover?", "Is normal wear and tear covered?",
              "Does the warranty cover accidents?", "My zipper broke after a year, is that covered?",
              "What isn't covered by the warranty?", "Is misuse covered under warranty?"]),
        Fact("warranty_claim", "warranty", "help@fernhollow.example",
             f"To make a claim, {wr['how']}.",
             ["How do I make a warranty claim?", "Where do I send a warranty request?",
              "What do I need to file a warranty claim?", "How can I start a warranty claim?",
              "Who do I contact about a defective product?", "My jacket seam split, how do I claim it?"]),
        Fact("warranty_repairs", "warranty", "$20",
             f"Out of warranty, {wr['repairs_out_of_warranty']}.",
             ["Do you repair gear?", "How much is a zipper repair?",
              "Can you fix a tear in my jacket that's out of warranty?", "Do you have a repair service?",
              "What do repairs cost?", "Can I get my old backpack fixed?"]),
        # ---- store / contact ----
        Fact("contact_phone", "contact", s["support_phone"],
             f"Call us at {s['support_phone']}, {s['support_hours']}.",
             ["What's your customer service phone number?", "How can I call you?",
              "Is there a support number?", "What number do I call for help?",
              "What's the phone number for Fernhollow?", "Can I speak to someone by phone?"]),
        Fact("contact_email", "contact", s["support_email"],
             f"Email us at {s['support_email']}; live chat is available {s['chat_hours']}.",
             ["What's your support email?", "How do I email customer service?",
              "Can I contact you by email?", "Where do I send questions?",
              "What email address should I write to?", "What's the best way to reach you online?"]),
        Fact("store_count", "locations", "4 stores",
             f"We have 4 stores: " + ", ".join(f"{l['city']}, {l['state']}" for l in f["locations"][:-1])
             + f" and {f['locations'][-1]['city']}, {f['locations'][-1]['state']}.",
             ["How many stores do you have?", "Where are your stores?",
              "Do you have physical locations?", "Which cities have a Fernhollow store?",
              "Is there a store near me in Colorado?", "List your store locations."]),
        Fact("store_headquarters", "locations", s["headquarters"],
             f"{name} was founded in {s['founded']} and is based in {s['headquarters']}.",
             ["Where is Fernhollow based?", "Where are your headquarters?",
              "In which city is Fernhollow based?", "Where did the company start?",
              "What state is Fernhollow Outfitters from?", "What city is the company from?"]),
    ]
    for loc in f["locations"]:
        c = loc["city"]
        facts.append(Fact(f"location_{c.lower()}_address", "locations", loc["address"],
                          f"Our {c} store is at {loc['address']}.",
                          [f"Where is your {c} store?", f"What's the address of the {c} location?",
                           f"Do you have a store in {c}?", f"How do I find the {c} shop?",
                           f"Where exactly is the {c} Fernhollow?", f"{c} store address?"]))
        facts.append(Fact(f"location_{c.lower()}_phone", "locations", loc["phone"],
                          f"You can call the {c} store at {loc['phone']}.",
                          [f"What is the phone number of the {c} store?", f"How do I call the {c} location?",
                           f"{c} store phone number?", f"Can I phone the {c} shop directly?",
                           f"What number reaches the {c} store?", f"How can I contact the {c} store by phone?"]))
    # ---- hours ----
    for day in ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]:
        d = day.capitalize()
        facts.append(Fact(f"hours_{day}", "hours", hr[day],
                          f"On {d}s our stores are open {hr[day]}.",
                          [f"What are your hours on {d}?", f"What time do you open on {d}?",
                           f"When do you close on {d}s?", f"Are you open on {d}? What hours?",
                           f"{d} store hours?", f"How late are you open on {d}?"]))
    for hol in hr["closed_holidays"]:
        facts.append(Fact(f"hours_closed_{re.sub(r'[^a-z]+', '_', hol.lower()).strip('_')}", "hours",
                          f"closed on {hol}",
                          f"All our stores are closed on {hol}; the website stays open.",
                          [f"Are you open on {hol}?", f"What are your {hol} hours?",
                           f"Can I shop in store on {hol}?", f"Is the store closed for {hol}?",
                           f"Will you be open {hol}?", f"Store hours for {hol}?"]))
    for hol, h in list(hr["reduced_hours"].items()) + [("Black Friday", hr["black_friday"])]:
        facts.append(Fact(f"hours_{re.sub(r'[^a-z0-9]+', '_', hol.lower()).strip('_')}", "hours", h,
                          f"On {hol} our stores are open {h}.",
                          [f"What are your hours on {hol}?", f"Are you open on {hol}?",
                           f"When do you close on {hol}?", f"What time do you open on {hol}?",
                           f"{hol} store hours?", f"Do you have special hours for {hol}?"]))
    facts.append(Fact("hours_all_stores", "hours", "same hours",
                      "All four stores keep the same hours.",
                      ["Do all your stores have the same hours?", "Are the Boulder store hours different?",
                       "Do opening times vary by location?", "Does the Asheville store keep the same schedule?",
                       "Is every location open at the same times?", "Are store hours the same everywhere?"]))
    return facts


def product_facts(f):
    facts = []
    for p in f["products"]:
        n, pl = p["name"], p["plural"]
        key = re.sub(r"[^a-z0-9]+", "_", n.lower()).strip("_")
        be = "are" if pl else "is"
        does = "do" if pl else "does"
        facts.append(Fact(f"{key}_price", "products", p["price"],
                          f"The {n} {'cost' if pl else 'costs'} {p['price']}.",
                          [f"How much {be} the {n}?", f"What {does} the {n} cost?",
                           f"What's the price of the {n}?", f"{n} price?",
                           f"How much do you charge for the {n}?", f"I'm looking at the {n}, how much {'are they' if pl else 'is it'}?"]))
        facts.append(Fact(f"{key}_materials", "products", p["material_short"],
                          f"The {n} {be} made of {p['materials']}.",
                          [f"What {be} the {n} made of?", f"What materials {does} the {n} use?",
                           f"What {be} the {n} constructed from?", f"Which materials are in the {n}?",
                           f"Tell me what the {n} {be} made from.", f"{n} materials?"]))
        facts.append(Fact(f"{key}_sizes", "products", p["sizes_short"],
                          f"The {n} {'come' if pl else 'comes'} in {p['sizes']}.",
                          [f"What sizes {does} the {n} come in?", f"What size range {be} the {n} available in?",
                           f"Which sizes can I get the {n} in?", f"What are the size options for the {n}?",
                           f"{n} sizes?", f"Do you have the {n} in my size? What sizes are there?"]))
        facts.append(Fact(f"{key}_care", "products", p["care_short"],
                          f"To care for the {n}, {p['care']}.",
                          [f"How do I wash the {n}?", f"How should I care for the {n}?",
                           f"What are the care instructions for the {n}?", f"How do I clean my {n}?",
                           f"What's the best way to look after the {n}?", f"{n} care instructions?"]))
        fq = p["feature_question"]
        facts.append(Fact(f"{key}_feature", "products", p["feature_short"],
                          f"The {n} {p['feature']}.",
                          [f"Tell me about the {fq} of the {n}.", f"What can you tell me about the {n}'s {fq}?",
                           f"I'd like to know the {fq} of the {n}.", f"Any details on the {n}'s {fq}?",
                           f"Could you describe the {fq} of the {n}?", f"Quick question about the {n}: {fq}?"]))
    return facts


def norm(q):
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", q.lower()).split())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "datasets" / "retail"))
    args = ap.parse_args()
    out = Path(args.out)
    facts_json = json.loads(FACTS.read_text(encoding="utf-8"))
    store = facts_json["store"]
    system = (f"You are the customer-service assistant of {store['name']}, {store['description']}. "
              "Answer the customer's question briefly and accurately, using only the store's policies and product facts.")
    facts = policy_facts(facts_json) + product_facts(facts_json)

    ids = [f.id for f in facts]
    assert len(set(ids)) == len(ids), "duplicate fact id"
    seen = {}
    for f in facts:
        for q in f.questions:
            k = norm(q)
            assert k not in seen, f"question {q!r} of {f.id} duplicates one of {seen[k]}"
            seen[k] = f.id

    train, heldout = [], []
    for f in facts:
        held = None
        if len(f.questions) >= MIN_PHRASINGS_FOR_HELDOUT:
            held = random.Random(f"{SEED}:{f.id}").randrange(len(f.questions))
        for i, q in enumerate(f.questions):
            (heldout if i == held else train).append((f, q))

    def chat(f, q):
        return {"messages": [{"role": "system", "content": system},
                             {"role": "user", "content": q},
                             {"role": "assistant", "content": f.response}],
                "answer": f.answer, "topic": f.topic, "fact_id": f.id}

    def alpaca(f, q):
        return {"instruction": q, "input": "", "output": f.response,
                "answer": f.answer, "topic": f.topic, "fact_id": f.id}

    def write_jsonl(path, rows):
        with open(path, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")

    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "qa_train.jsonl", [chat(f, q) for f, q in train])
    write_jsonl(out / "qa_heldout.jsonl", [chat(f, q) for f, q in heldout])
    write_jsonl(out / "alpaca_train.jsonl", [alpaca(f, q) for f, q in train])
    write_jsonl(out / "alpaca_heldout.jsonl", [alpaca(f, q) for f, q in heldout])
    with open(out / "faq.txt", "w", encoding="utf-8") as fh:
        for f in facts:
            fh.write(f"{store['name']} FAQ. Q: {f.questions[0]} A: {f.response}\n")

    topics = sorted({f.topic for f in facts})
    tr, ho = Counter(f.topic for f, _ in train), Counter(f.topic for f, _ in heldout)
    stats = {
        "facts": len(facts),
        "pairs": len(train) + len(heldout),
        "train": len(train),
        "heldout": len(heldout),
        "heldout_fraction": round(len(heldout) / (len(train) + len(heldout)), 4),
        "faq_lines": len(facts),
        "per_topic": {t: {"facts": sum(1 for f in facts if f.topic == t), "train": tr[t], "heldout": ho[t]}
                      for t in topics},
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
