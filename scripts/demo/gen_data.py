"""Synthetic tool-use conversations for the qwen3-agent demo model.

Every conversation is a list of OpenAI-style messages plus the tool list the demo agent renders
(scripts/demo/tools.json, checked against `qwen3-agent tools agents/demo.yaml` by a test). Tool
results are computed the way the real tools compute them: time results follow mcp-server-time's
JSON exactly (zoneinfo), code results are the stdout of actually running the program, fetch
results follow mcp-server-fetch's "Contents of URL:" layout.

Phrasing templates are split: the last quarter of each list is held out for evaluation, as are
the URL words and city pairs drawn for the held-out split. Run with --split train|eval.

    python scripts/demo/gen_data.py --split train --count 60000 --seed 1 > train.jsonl
"""

import argparse
import contextlib
import io
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
TOKENIZER = HERE.parents[1] / "tests" / "fixtures" / "qwen3-tokenizer" / "tokenizer.json"
SYSTEM = (HERE / "system_prompt.txt").read_text().strip()

CITIES = {
    "Tokyo": "Asia/Tokyo", "Paris": "Europe/Paris", "London": "Europe/London", "New York": "America/New_York",
    "Los Angeles": "America/Los_Angeles", "Chicago": "America/Chicago", "Denver": "America/Denver",
    "Sydney": "Australia/Sydney", "Melbourne": "Australia/Melbourne", "Berlin": "Europe/Berlin",
    "Madrid": "Europe/Madrid", "Rome": "Europe/Rome", "Moscow": "Europe/Moscow", "Istanbul": "Europe/Istanbul",
    "Dubai": "Asia/Dubai", "Mumbai": "Asia/Kolkata", "Delhi": "Asia/Kolkata", "Kathmandu": "Asia/Kathmandu",
    "Bangkok": "Asia/Bangkok", "Singapore": "Asia/Singapore", "Hong Kong": "Asia/Hong_Kong",
    "Shanghai": "Asia/Shanghai", "Beijing": "Asia/Shanghai", "Seoul": "Asia/Seoul", "Jakarta": "Asia/Jakarta",
    "Manila": "Asia/Manila", "Karachi": "Asia/Karachi", "Tehran": "Asia/Tehran", "Cairo": "Africa/Cairo",
    "Lagos": "Africa/Lagos", "Nairobi": "Africa/Nairobi", "Johannesburg": "Africa/Johannesburg",
    "Casablanca": "Africa/Casablanca", "Sao Paulo": "America/Sao_Paulo", "Buenos Aires": "America/Argentina/Buenos_Aires",
    "Mexico City": "America/Mexico_City", "Toronto": "America/Toronto", "Vancouver": "America/Vancouver",
    "Lima": "America/Lima", "Bogota": "America/Bogota", "Santiago": "America/Santiago", "Anchorage": "America/Anchorage",
    "Honolulu": "Pacific/Honolulu", "Auckland": "Pacific/Auckland", "Reykjavik": "Atlantic/Reykjavik",
    "Dublin": "Europe/Dublin", "Lisbon": "Europe/Lisbon", "Amsterdam": "Europe/Amsterdam",
    "Stockholm": "Europe/Stockholm", "Oslo": "Europe/Oslo", "Helsinki": "Europe/Helsinki", "Athens": "Europe/Athens",
    "Warsaw": "Europe/Warsaw", "Vienna": "Europe/Vienna", "Zurich": "Europe/Zurich", "Prague": "Europe/Prague",
    "Kyiv": "Europe/Kyiv", "Riyadh": "Asia/Riyadh", "Taipei": "Asia/Taipei", "Kuala Lumpur": "Asia/Kuala_Lumpur",
    "Hanoi": "Asia/Bangkok", "Perth": "Australia/Perth", "Adelaide": "Australia/Adelaide", "Phoenix": "America/Phoenix",
}

# The last quarter of every template list is held out for evaluation.
TIME_NOW = [
    "What time is it in {city}?", "what time is it in {city}", "Current time in {city}?",
    "Tell me the time in {city}.", "What's the time in {city} right now?", "time in {city}?",
    "Can you tell me what time it is in {city}?", "What is the local time in {city}?",
    "Do you know the current time in {city}?", "I need the time in {city}.", "{city} time now?",
    "What time is it over in {city} at the moment?", "Please check the time in {city}.",
    "Which day and time is it in {city} now?", "Hey, what's the clock say in {city}?",
    "How late is it in {city}?",
]
TIME_CONVERT = [
    "Convert {hm} from {a} to {b}.", "What is {hm} {a} time in {b}?", "If it is {hm} in {a}, what time is it in {b}?",
    "convert {hm} {a} time to {b} time", "{hm} in {a} is what time in {b}?",
    "When it's {hm} in {a}, what's the time in {b}?", "Please convert {hm} from {a} time to {b}.",
    "I have a call at {hm} in {a}. What time is that in {b}?", "Translate {hm} {a} time into {b} time.",
    "My flight leaves {a} at {hm}. What time is that in {b}?", "What's {hm} {a} in {b} time?",
    "{a} {hm} -> {b}?",
]
TIME_LOCAL = ["What time is it?", "what's the time", "Tell me the current time.", "What time is it now?"]
TIME_TWO = [
    "What time is it in {a} and in {b}?", "Current time in {a} and {b}?", "Tell me the time in both {a} and {b}.",
    "What's the time right now in {a} and {b}?",
]
ARITH = [
    "What is {x} {op} {y}?", "Calculate {x} {op} {y}.", "compute {x} {op} {y}", "How much is {x} {op} {y}?",
    "{x} {op} {y} = ?", "Work out {x} {op} {y} for me.", "Please evaluate {x} {op} {y}.", "what's {x} {op} {y}",
]
POWER = [
    "What is {x} to the power of {y}?", "Compute {x}^{y}.", "What is {x} raised to the {y}?",
    "Calculate {x} ** {y}.", "how big is {x} to the {y}th power", "Evaluate {x} to the power {y}.",
    "Raise {x} to the power of {y}.", "What do you get for {x}^{y}?",
]
RANGE_SUM = [
    "What is the sum of all integers from {x} to {y}?", "Add up every whole number from {x} to {y}.",
    "Sum the numbers {x} through {y}.", "sum of integers between {x} and {y} inclusive?",
    "What do the integers from {x} to {y} add up to?", "Compute the sum {x} + ... + {y}.",
    "Total of all numbers from {x} up to {y}?", "If I add {x}, {x1}, ..., {y}, what do I get?",
]
STATS = [
    "What is the {stat} of {nums}?", "Compute the {stat} of these numbers: {nums}.", "{stat} of {nums}?",
    "Find the {stat} of {nums}.", "Give me the {stat} for the data {nums}.", "Calculate the {stat}: {nums}",
    "I have the values {nums}. What is their {stat}?", "Please work out the {stat} of {nums}.",
]
FACT = [
    "What is the factorial of {x}?", "Compute {x}!.", "What is the square root of {x}?", "Calculate sqrt({x}).",
    "What is {x} factorial?", "Find the square root of {x}.", "How much is {x}! exactly?", "root of {x}?",
]
FETCH = [
    "What does {url} say?", "Fetch {url} and tell me what it says.", "Give me the title of {url}.",
    "Read {url} for me.", "What is on the page {url}?", "Open {url} and summarize the first line.",
    "Can you check {url}?", "What's the headline at {url}?", "Look at {url} please.",
    "What does the page at {url} start with?", "Get {url}.", "Tell me what {url} is about.",
]
FETCH_COUNT = [
    "How many words are in the first sentence of {url}?", "Fetch {url} and count the words of its first line.",
    "Count the words in the opening sentence of {url}.", "Word count of the first line at {url}?",
]
# Plain chat, by intent: (prompts, answers). The last quarter of every prompt list is held out.
HELLO = "Hello! I can tell the time in any city, convert times between time zones, run Python code and fetch web pages. What would you like to do?"
CHAT = {
    "greet": ([
        "Hi", "Hello!", "hey there", "Good morning", "Hello", "hi!", "Hey", "Good evening", "Good afternoon",
        "Hi there!", "Howdy", "hello again", "Greetings", "Hey hey", "Morning!", "Yo", "hiya", "Hi, how are you?",
        "Hello, nice to meet you", "Hey, how's it going?", "Good day", "Hi friend", "Evening!", "Hey you",
    ], [HELLO, "Hi! Ask me for the time somewhere, a calculation or what a web page says.",
        "Hello! What would you like to know: a time, a calculation or a web page?"]),
    "thanks": ([
        "Thanks!", "thank you", "Thank you very much.", "thanks a lot", "Many thanks", "Cheers", "thx",
        "Thanks, that helps", "great, thanks", "Thank you so much!", "Appreciate it", "ty", "Thanks for the help",
        "Perfect, thank you", "Awesome, thanks!", "thanks mate", "Much appreciated", "Nice, thank you",
        "Thank you kindly", "Thanks again", "Brilliant, thanks", "That's great, thank you", "Many thanks indeed",
        "thank you very much",
    ], ["You're welcome!", "You're welcome! Anything else?", "Glad I could help!"]),
    "bye": ([
        "Goodbye", "bye", "See you later", "Good night", "Bye bye!", "That's all for now", "See ya", "Take care",
        "I'm done, bye", "Catch you later", "Farewell", "Have a nice day", "bye for now", "Later!", "Good night!",
        "See you tomorrow", "That's it, goodbye", "Ok bye", "Talk to you later", "So long",
    ], ["Goodbye!", "Bye! Come back any time.", "Goodbye, have a nice day!"]),
    "who": ([
        "Who are you?", "What are you?", "What's your name?", "Are you a bot?", "Introduce yourself",
        "Are you a large model?", "Who made you?", "Are you human?", "What model are you?", "Tell me about yourself",
        "What kind of assistant are you?", "Are you ChatGPT?", "Who am I talking to?", "What is this?",
        "Are you an AI?", "What should I call you?",
    ], ["I am the qwen3-agent demo model, a tiny model trained to use a clock, a Python sandbox and a web fetcher. Ask me for the time somewhere, a calculation or what a web page says.",
        "I am a tiny demo model: I only know how to use my tools for time, Python code and web pages."]),
    "help": ([
        "What can you do?", "Can you help me?", "help", "What tools do you have?", "How do you work?",
        "What are you good at?", "What can I ask you?", "Show me what you can do", "Which tools can you use?",
        "How can you help?", "What do you know?", "Give me some examples of what you do", "I need help",
        "What questions can you answer?", "Can you do anything useful?", "What services do you offer?",
    ], ["I can tell the current time in a city, convert a time between two cities, run short Python programs for calculations, and fetch a web page to tell you what it says.",
        "Yes. I can tell the time in a city, convert times, run Python code or fetch a web page. What do you need?"]),
    "ack": ([
        "ok", "Okay", "cool", "Great", "I see", "Got it", "Nice", "Alright", "Interesting", "Sounds good",
        "ok cool", "Wow", "Fine", "Makes sense", "Good to know", "Right", "Sure", "Understood", "Neat", "Hmm ok",
    ], ["Anything else I can do? I can check a time, run a calculation or read a web page.",
        "Let me know if you need a time, a calculation or a web page."]),
    "mood": ([
        "How are you?", "How are you doing?", "How's your day?", "Are you ok?", "Having a good day?",
        "How do you feel?", "What's up?", "How have you been?", "You doing well?", "How's everything?",
        "Everything fine with you?", "How is it going?",
    ], ["I'm doing well, thanks! I can check a time, run a calculation or read a web page for you.",
        "All good, thank you! What can I do for you?"]),
}
WORDS = ("otter river lantern maple comet harbor violet ember falcon meadow quartz willow canyon ripple "
         "saffron tundra beacon cobalt orchard summit glacier thistle aurora basil cedar delta fjord "
         "garnet heron iris juniper kestrel lagoon marble nectar opal pebble quill raven sierra tulip "
         "umber vapor wren yarrow zephyr acorn birch clover dune fern grove hazel ivy jade kelp lotus "
         "mango nova olive pine quince reed sage thyme velvet wave").split()
SUBJECTS = ["Sea otters", "The river", "Our team", "The museum", "This recipe", "The library", "Honey bees",
            "The new bridge", "Local farmers", "The council", "Mountain goats", "The observatory", "Night trains",
            "The orchestra", "Solar panels", "The old lighthouse", "Most comets", "The garden club", "Wild salmon",
            "The city park", "Our bakery", "The festival", "Penguins", "The school", "Electric buses"]
VERBS = ["open at {n} on weekdays", "hold hands while they sleep", "travel {n} kilometres every spring",
         "were founded in {y}", "need {n} minutes of preparation", "welcome {n} visitors each day",
         "produce {n} jars of honey a year", "close for repairs in {y}", "play a free concert every {d}",
         "grow best in {adj} soil", "have the densest fur of any animal", "were rebuilt in {y}",
         "use {n} percent less energy", "moved to a {adj} building in {y}", "sell {adj} bread every {d}",
         "count {n} stars in a clear night", "return to the coast in {y}", "start at {n} in the morning"]
# Training-only lead-ins that carry no entity, so the model learns to look past them.
CONTEXT = ["I'm planning a trip.", "Quick one.", "For a report:", "My colleague asked me this.", "Just curious.",
           "I have a question.", "Sorry to bother you.", "Okay, next question.", "One more thing.", "Help me out here.",
           "This is for work.", "I'm in a hurry.", "Another question for you.", "Hello again.", "Good morning!"]
VOCAB_WORDS = sorted(t for t in json.loads(TOKENIZER.read_text())["model"]["vocab"]
                     if 2 <= len(t) <= 9 and t.isascii() and t.isalpha() and t.islower())
# Whole words the tokenizer knows with a leading space ("Ġword"); inside a URL they split into pieces
# just as the eval words do.
REAL_WORDS = sorted({t[1:] for t in json.loads(TOKENIZER.read_text())["model"]["vocab"]
                     if t.startswith("\u0120") and 3 <= len(t) - 1 <= 10 and t[1:].isascii() and t[1:].isalpha()
                     and t[1:].islower()} - set(WORDS))
ADJ = ["sandy", "quiet", "bright", "larger", "historic", "fresh", "rocky", "modern", "sunny", "smaller"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


# Training-only phrasings, composed from parts so the model learns to read the entities (cities,
# times, numbers, URLs) rather than memorise sentences. A composed sentence equal to a held-out
# template is rejected, so evaluation phrasings stay unseen.
ASK = ["", "Tell me ", "Can you tell me ", "Could you tell me ", "Please tell me ", "I want to know ", "Do you know ",
       "I'd like to know ", "Let me know ", "Check ", "Look up ", "Find ", "Give me "]
COMPOSE = {
    "TIME_NOW": lambda r: r.choice([
        r.choice(ASK) + r.choice(["what time it is in {city}", "the time in {city}", "the current time in {city}",
                                  "the local time in {city}", "the time over in {city}", "the hour in {city}",
                                  "what the time is in {city}", "what day and time it is in {city}",
                                  "the clock time in {city}", "the present time in {city}"]),
        r.choice(["What time is it in {city}", "What's the time in {city}", "What is the time in {city}",
                  "What's the current time in {city}", "Current local time in {city}", "Time in {city}",
                  "What time do they have in {city}", "What is the hour in {city}", "What day is it in {city}",
                  "In {city}, what time is it", "{city}: what time is it", "The time in {city}",
                  "What's the local time for {city}", "Right now in {city}, what time is it",
                  "What time is it currently in {city}", "Is it morning or evening in {city}",
                  "What's the date and time in {city}", "{city} local time",
                  "What hour is it in {city}", "How early is it in {city}", "What does the clock show in {city}",
                  "Clock in {city}", "Is it late in {city}", "What's the hour over in {city}", "Time check: {city}",
                  "My friend lives in {city}. What time is it there", "I'm calling {city}. What time is it there",
                  "Is it day or night in {city}", "Current hour in {city}", "Now in {city}", "{city} clock",
                  "Tell me {city}'s time", "What is {city} time now", "The time right now in {city}",
                  "Can I call someone in {city} now? What time is it there"]),
    ]) + r.choice(["?", "?", "", ".", " now?", " right now?", " at the moment?", " currently?", " today?", " please?"]),
    "TIME_CONVERT": lambda r: r.choice([
        "Convert {hm} {a} time to {b}", "Convert {hm} in {a} to {b} time", "{hm} {a} time in {b}",
        "What time is {hm} {a} time in {b}", "What is {hm} in {a} in {b} time", "If it's {hm} in {a}, what time is it in {b}",
        "When it is {hm} in {a}, what time is it in {b}", "{hm} in {a} equals what time in {b}",
        "What's {hm} from {a} in {b}", "Change {hm} {a} time into {b} time", "Meeting at {hm} in {a}: what time in {b}",
        "A call at {hm} {a} time is when in {b}", "{a} {hm} to {b}", "{a} {hm} in {b} time", "From {a} to {b}: {hm}",
        "Time in {b} when it's {hm} in {a}", "What hour in {b} matches {hm} in {a}", "I land in {b}; it's {hm} in {a}. What time is it there",
        "Our office in {a} opens at {hm}. What time is that in {b}", "The game starts at {hm} in {a}. When is that in {b}",
        "At {hm} in {a}, what's the time in {b}", "Convert {a} {hm} to {b}", "{hm} {a} -> {b}",
        "My train departs {a} at {hm}. What time will it be in {b}", "The bus leaves {a} at {hm}; what is that in {b}",
        "The webinar is at {hm} {a} time. When is it for someone in {b}", "{a} at {hm} is {b} at what time",
        "Source {a}, time {hm}, target {b}", "From {a} at {hm} to {b} time", "What time in {b} is {hm} in {a}",
        "In {b}, what time is it when {a} has {hm}", "{hm} ({a}) in {b}", "{a} {hm} => {b}", "{a} {hm} → {b}",
        "{a} {hm} to {b} time", "Convert from {a} to {b}: {hm}", "{hm} {a}, {b}", "{a} {hm}, {b} time",
        "What's the {b} time for {hm} in {a}", "My boss in {a} wants a meeting at {hm}. What time is that for me in {b}",
        "The shop in {a} opens at {hm}. What time is that in {b}", "The match kicks off at {hm} in {a}. What time in {b}",
        "I wake up at {hm} in {a}. What time is it in {b} then", "Flight from {a} at {hm}: what's the time in {b}",
    ]) + r.choice(["?", "?", "", ".", " please?", " for me."]),
    "ARITH": lambda r: r.choice(["What's {x} {op} {y}", "Calculate {x} {op} {y}", "What does {x} {op} {y} equal",
                                 "Solve {x} {op} {y}", "Give me {x} {op} {y}", "{x} {op} {y}", "Result of {x} {op} {y}",
                                 "Compute {x} {op} {y} exactly", "Can you calculate {x} {op} {y}", "Find {x} {op} {y}",
                                 "What is the result of {x} {op} {y}", "Tell me {x} {op} {y}"])
    + r.choice(["?", "", ".", " please"]),
    "POWER": lambda r: r.choice(["{x} to the power {y}", "{x} to the {y}th power", "{x}^{y}", "{x} ** {y}",
                                 "What's {x} raised to the power of {y}", "Power: {x} ^ {y}", "Compute {x} to the power of {y}",
                                 "What is {x}^{y} exactly", "Calculate {x} raised to {y}", "How much is {x} to the power of {y}"])
    + r.choice(["?", "", ".", " please"]),
    "RANGE_SUM": lambda r: r.choice(["Sum of the numbers from {x} to {y}", "Sum all integers from {x} to {y}",
                                     "What is the sum from {x} to {y}", "Add the integers {x} to {y}",
                                     "Total of the whole numbers between {x} and {y}, inclusive",
                                     "Sum every number from {x} up to {y}", "Add all numbers from {x} through {y}",
                                     "What do you get adding {x} to {y}", "Sum of range {x}..{y}",
                                     "Add together the numbers from {x} to {y}", "The total of all integers from {x} to {y}"])
    + r.choice(["?", "", "."]),
    "STATS": lambda r: r.choice(["{stat} of {nums}", "What's the {stat} of {nums}", "Get the {stat} of {nums}",
                                 "The {stat} of these values: {nums}", "Data: {nums}. {stat}", "{nums}: what is the {stat}",
                                 "Compute the {stat} for {nums}", "Tell me the {stat} of the list {nums}",
                                 "Numbers {nums}, find their {stat}"]) + r.choice(["?", "", "."]),
    "FACT": lambda r: r.choice(["{x}!", "What's {x}!", "Factorial of {x}", "Compute the factorial of {x}",
                                "Calculate {x} factorial", "Square root of {x}", "What's the square root of {x}",
                                "sqrt of {x}", "Compute sqrt {x}", "The square root of {x}", "Give me the factorial of {x}"])
    + r.choice(["?", "", "."]),
    "FETCH": lambda r: r.choice([
        "What's on {url}", "What is written on {url}", "Read the page {url}", "Open {url}", "Fetch {url}",
        "Summarize {url}", "What's at {url}", "Go to {url} and tell me what it says", "Check the page {url}",
        "What does the website {url} say", "Tell me about the page {url}", "Visit {url}", "Load {url}",
        "What's the first line of {url}", "Show me what {url} says", "Read {url} and quote it", "Look up {url}",
        "What is the title of {url}", "What's the heading of {url}", "{url} - what does it say", "Browse to {url}",
        "Download {url} and tell me what's there", "Quote the start of {url}", "Please read {url}",
        # The URL followed by ordinary words, so copying learns where a URL ends.
        "Explain what {url} is saying", "Find out what {url} is for", "Check whether {url} is interesting",
        "Read {url} is what I ask", "See if {url} has news", "Is {url} about anything useful",
        "Does {url} say something", "Let me know what {url} contains", "I wonder what {url} is about",
        "What {url} says is what I need", "Fetch {url} then quote it", "Open {url} so I can read it",
    ]) + r.choice(["?", "", ".", " for me", " please"]),
    "FETCH_COUNT": lambda r: r.choice(["How many words does the first line of {url} have",
                                       "Count the words in the first sentence at {url}",
                                       "Fetch {url} and tell me how many words its first sentence has",
                                       "Number of words in the opening line of {url}"]) + r.choice(["?", "", "."]),
}


def split_list(items, split):
    cut = len(items) - max(1, len(items) // 4)
    return items[:cut] if split == "train" else items[cut:]


class Gen:
    def __init__(self, split, rng, tools):
        self.split, self.rng, self.tools = split, rng, tools
        cities = sorted(CITIES)
        self.cities = cities
        # URL words: eval URLs use the real words of WORDS, never used to write a training URL; training
        # URLs are built from the tokenizer's own word pieces so the model learns to copy any of them.
        self.url_words = WORDS if split == "eval" else [w for w in VOCAB_WORDS if w not in set(WORDS)]

    def t(self, templates):
        if self.split == "train" and self.rng.random() < 0.6:
            name = next(n for n, v in globals().items() if v is templates)
            if name in COMPOSE:
                held = {h.rstrip("?.! ").lower() for h in split_list(templates, "eval")}
                while True:
                    tpl = COMPOSE[name](self.rng)
                    if tpl.rstrip("?.! ").lower() not in held:
                        return tpl
        return self.rng.choice(split_list(templates, self.split))

    def city_pair(self):
        while True:
            a, b = self.rng.sample(self.cities, 2)
            if CITIES[a] == CITIES[b]:
                continue
            # Held-out pairs: a hash decides, so train and eval never share an ordered pair.
            held = (hash_pair(a, b) % 5) == 0
            if held == (self.split == "eval"):
                return a, b

    def now(self):
        base = datetime(2025, 1, 1, tzinfo=timezone.utc)
        return base + timedelta(seconds=self.rng.randrange(3 * 365 * 86400))

    def local_zone(self):
        return "UTC" if self.rng.random() < 0.5 else CITIES[self.rng.choice(self.cities)]

    # --- tools, computed the way the real servers compute them ---

    def time_result(self, zone, instant):
        local = instant.astimezone(ZoneInfo(zone))
        return {"timezone": zone, "datetime": local.isoformat(timespec="seconds"),
                "day_of_week": local.strftime("%A"), "is_dst": bool(local.dst())}

    def convert_result(self, src, hm, dst, instant):
        s_zone, d_zone = ZoneInfo(src), ZoneInfo(dst)
        now = instant.astimezone(s_zone)
        h, m = map(int, hm.split(":"))
        source = datetime(now.year, now.month, now.day, h, m, tzinfo=s_zone)
        round_trip = datetime.fromtimestamp(source.timestamp(), s_zone)
        if round_trip.replace(tzinfo=None) != source.replace(tzinfo=None):
            return None
        target = source.astimezone(d_zone)
        diff = ((target.utcoffset() or timedelta()) - (source.utcoffset() or timedelta())).total_seconds() / 3600
        diff_s = f"{diff:+.1f}h" if diff.is_integer() else f"{diff:+.2f}".rstrip("0").rstrip(".") + "h"

        def part(zone, dt):
            return {"timezone": zone, "datetime": dt.isoformat(timespec="seconds"),
                    "day_of_week": dt.strftime("%A"), "is_dst": bool(dt.dst())}
        return {"source": part(src, source), "target": part(dst, target), "time_difference": diff_s}

    @staticmethod
    def run_code(code):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, {})
        return out.getvalue().rstrip("\n")

    # --- conversation pieces ---

    def call(self, name, args):
        return {"type": "function", "function": {"name": name, "arguments": args}}

    def assistant(self, content, calls=None, reasoning=""):
        msg = {"role": "assistant", "content": content, "reasoning_content": reasoning if self.thinking else ""}
        if calls:
            msg["tool_calls"] = calls
        return msg

    @staticmethod
    def tool(content):
        return {"role": "tool", "content": content}

    # --- tasks: each returns (user text, list of assistant/tool messages, expectation) ---

    def task_time_now(self):
        city = self.rng.choice(self.cities)
        zone = CITIES[city]
        res = self.time_result(zone, self.now())
        hm = res["datetime"][11:16]
        user = self.t(TIME_NOW).format(city=city)
        steps = [
            self.assistant("", [self.call("get_current_time", {"timezone": zone})],
                           f"The user wants the current time in {city}. {city} is in the {zone} time zone, so I call get_current_time."),
            self.tool(json.dumps(res, indent=2)),
            self.assistant(f"It is {hm} on {res['day_of_week']} ({res['datetime'][:10]}) in {city}.", None,
                           f"The tool says {hm} on {res['day_of_week']} in {city}. I tell the user."),
        ]
        return user, steps, {"tool": "get_current_time", "arguments": {"timezone": zone}, "answer": hm}

    def task_time_local(self):
        zone = self.local
        res = self.time_result(zone, self.now())
        hm = res["datetime"][11:16]
        user = self.t(TIME_LOCAL)
        steps = [
            self.assistant("", [self.call("get_current_time", {"timezone": zone})],
                           f"The user did not name a place, so I use the local time zone {zone} and call get_current_time."),
            self.tool(json.dumps(res, indent=2)),
            self.assistant(f"It is {hm} on {res['day_of_week']} ({res['datetime'][:10]}), local time ({zone}).", None,
                           f"The tool says {hm} on {res['day_of_week']}. I tell the user."),
        ]
        return user, steps, {"tool": "get_current_time", "arguments": {"timezone": zone}, "answer": hm}

    def task_time_convert(self):
        while True:
            a, b = self.city_pair()
            hm = f"{self.rng.randrange(24):02d}:{self.rng.choice([0, 0, 15, 30, 45, self.rng.randrange(60)]):02d}"
            res = self.convert_result(CITIES[a], hm, CITIES[b], self.now())
            if res:
                break
        spoken = hm if self.rng.random() < 0.7 else hm.lstrip("0") if not hm.startswith("00") else hm
        user = self.t(TIME_CONVERT).format(hm=spoken, a=a, b=b)
        target = res["target"]["datetime"][11:16]
        args = {"source_timezone": CITIES[a], "time": hm, "target_timezone": CITIES[b]}
        steps = [
            self.assistant("", [self.call("convert_time", args)],
                           f"The user wants {hm} in {a} ({CITIES[a]}) converted to {b} ({CITIES[b]}). I call convert_time."),
            self.tool(json.dumps(res, indent=2)),
            self.assistant(f"{hm} in {a} is {target} on {res['target']['day_of_week']} in {b} "
                           f"(time difference {res['time_difference']}).", None,
                           f"The tool says {target} in {b}. I tell the user."),
        ]
        return user, steps, {"tool": "convert_time", "arguments": args, "answer": target, "cities": [a, b]}

    def task_time_two(self):
        a, b = self.city_pair()
        instant = self.now()
        ra, rb = self.time_result(CITIES[a], instant), self.time_result(CITIES[b], instant)
        ha, hb = ra["datetime"][11:16], rb["datetime"][11:16]
        user = self.t(TIME_TWO).format(a=a, b=b)
        steps = [
            self.assistant("", [self.call("get_current_time", {"timezone": CITIES[a]}),
                                self.call("get_current_time", {"timezone": CITIES[b]})],
                           f"The user wants the time in {a} ({CITIES[a]}) and {b} ({CITIES[b]}). I call get_current_time twice."),
            self.tool(json.dumps(ra, indent=2)),
            self.tool(json.dumps(rb, indent=2)),
            self.assistant(f"In {a} it is {ha} ({ra['day_of_week']}), and in {b} it is {hb} ({rb['day_of_week']}).", None,
                           f"The tools say {ha} in {a} and {hb} in {b}. I tell the user."),
        ]
        return user, steps, {"tool": "get_current_time", "arguments": {"timezone": CITIES[a]}, "answer": ha}

    def code_question(self):
        r = self.rng
        kind = r.choice(["arith", "arith", "power", "range", "stats", "fact"])
        if kind == "arith":
            op = r.choice(["+", "-", "*", "*", "/"])
            x, y = r.randrange(2, 10 ** r.randint(2, 5)), r.randrange(2, 10 ** r.randint(1, 4))
            spoken = op
            if self.split == "train" and r.random() < 0.3:
                spoken = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}[op]
            q = self.t(ARITH).format(x=x, op=spoken, y=y)
            code = f"print({x} {op} {y})"
        elif kind == "power":
            x, y = r.randrange(2, 40), r.randrange(2, 20)
            q = self.t(POWER).format(x=x, y=y)
            code = f"print({x} ** {y})"
        elif kind == "range":
            x = r.randrange(0, 500)
            y = x + r.randrange(5, 5000)
            q = self.t(RANGE_SUM).format(x=x, y=y, x1=x + 1)
            code = f"print(sum(range({x}, {y} + 1)))"
        elif kind == "stats":
            stat = r.choice(["mean", "median", "standard deviation", "average", "sum", "maximum", "minimum"])
            nums = [r.randrange(0, 200) for _ in range(r.randint(3, 8))]
            text = ", ".join(map(str, nums))
            q = self.t(STATS).format(stat=stat, nums=text)
            lst = "[" + text + "]"
            code = {
                "mean": f"import numpy as np\nprint(np.mean({lst}))",
                "average": f"import numpy as np\nprint(np.mean({lst}))",
                "median": f"import statistics\nprint(statistics.median({lst}))",
                "standard deviation": f"import numpy as np\nprint(round(float(np.std({lst})), 4))",
                "sum": f"print(sum({lst}))",
                "maximum": f"print(max({lst}))",
                "minimum": f"print(min({lst}))",
            }[stat]
        else:
            x = r.randrange(2, 30)
            tpl = self.t(FACT)
            q = tpl.format(x=x)
            code = f"import math\nprint(math.factorial({x}))" if ("!" in tpl or "factorial" in tpl) \
                else f"import math\nprint(math.sqrt({x}))"
        return q, code

    def task_code(self):
        q, code = self.code_question()
        out = self.run_code(code)
        steps = [
            self.assistant("", [self.call("code_interpreter", {"code": code})],
                           "This needs an exact calculation, so I run Python with code_interpreter."),
            self.tool(out),
            self.assistant(f"The result is {out}.", None, f"The program printed {out}. I tell the user."),
        ]
        return q, steps, {"tool": "code_interpreter", "arguments": {"code": code}, "answer": out}

    def page(self):
        r = self.rng
        sentences = []
        for _ in range(r.randint(1, 3)):
            verb = r.choice(VERBS).format(n=r.randrange(2, 900), y=r.randrange(1850, 2026), d=r.choice(DAYS),
                                           adj=r.choice(ADJ))
            sentences.append(f"{r.choice(SUBJECTS)} {verb}.")
        heading = None
        if r.random() < 0.4:
            heading = " ".join(self.word().capitalize() for _ in range(r.randint(1, 3)))
        return heading, sentences

    def word(self):
        """A URL word: training takes a whole word, joins one or two vocabulary pieces, or makes a
        pseudo-word."""
        r = self.rng
        if self.split == "eval":
            return r.choice(self.url_words)
        if r.random() < 0.15:
            return "".join(r.choice("bcdfghjklmnprstvwz") + r.choice("aeiou") for _ in range(r.randint(2, 4)))
        while True:
            if r.random() < 0.5:
                word = r.choice(REAL_WORDS)
            else:
                word = "".join(r.choice(self.url_words) for _ in range(r.choice([1, 1, 2])))
            if word not in WORDS and len(word) <= 14:
                return word

    def url(self):
        r = self.rng
        host = "-".join(self.word() for _ in range(r.randint(1, 2)))
        tld = r.choice(["com", "org", "net", "io", "dev", "example.com"])
        path = "/".join(self.word() for _ in range(r.randint(0, 2)))
        scheme = r.choice(["https", "https", "http"])
        return f"{scheme}://{host}.{tld}/{path}" if path else f"{scheme}://{host}.{tld}/"

    def fetch_result(self, url, heading, sentences):
        body = "\n\n".join(sentences)
        if heading:
            body = f"# {heading}\n\n{body}"
        return f"Contents of {url}:\n{body}"

    def task_fetch(self):
        url = self.url()
        heading, sentences = self.page()
        first = heading if heading else sentences[0]
        steps = [
            self.assistant("", [self.call("fetch", {"url": url})],
                           "The user asks about a web page, so I fetch it."),
            self.tool(self.fetch_result(url, heading, sentences)),
            self.assistant(f'The page starts with: "{first}"', None, f"The page starts with {first}. I quote it."),
        ]
        return self.t(FETCH).format(url=url), steps, {"tool": "fetch", "arguments": {"url": url}, "answer": first}

    def task_fetch_count(self):
        url = self.url()
        _, sentences = self.page()
        first = sentences[0]
        code = f"print(len({json.dumps(first)}.split()))"
        out = self.run_code(code)
        steps = [
            self.assistant("", [self.call("fetch", {"url": url})], "First I fetch the page."),
            self.tool(self.fetch_result(url, None, sentences)),
            self.assistant("", [self.call("code_interpreter", {"code": code})],
                           f"The first sentence is {first} I count its words with Python."),
            self.tool(out),
            self.assistant(f'The first sentence, "{first}", has {out} words.', None,
                           f"The program printed {out}. I tell the user."),
        ]
        return self.t(FETCH_COUNT).format(url=url), steps, {"tool": "fetch", "arguments": {"url": url}, "answer": out}

    def task_chat(self):
        intent = self.rng.choice(sorted(CHAT))
        prompts, answers = CHAT[intent]
        user = self.rng.choice(split_list(prompts, self.split))
        steps = [self.assistant(self.rng.choice(answers), None, "The user is chatting. No tool is needed.")]
        return user, steps, {"tool": None, "arguments": None, "answer": None}

    def task_echo(self):
        """Training-only: repeat a string of random word pieces. Every target token is a copy, which teaches
        the copying that URLs and quoted headings need far faster than the tool tasks alone."""
        r = self.rng
        kind = r.random()
        if kind < 0.35:
            # URLs in running text: the fetch failures were URLs copied in part or past their end.
            text = self.url() + r.choice(["", "", " is", " says", ".", "?", " and", " please"])
        elif kind < 0.7:
            # Single word pieces between separators the tokenizer keeps apart ("//", "--", "::"), so each
            # piece is one target token: a URL piece the model has rarely written has a weak embedding
            # and is not copied (fetch failed even on fresh training-style URLs).
            pieces = [r.choice(self.url_words) for _ in range(r.randint(4, 12))]
            text = "".join(p + r.choice(["//", "--", "::", "-", "/", "."]) for p in pieces)[:-1].rstrip("/-:.")
        else:
            text = r.choice([" ", "-", ".", "/", ""]).join(self.word() for _ in range(r.randint(2, 8)))
        user = r.choice(["Repeat exactly: {t}", "Say {t}", "Copy this: {t}", "Echo {t}", "Write back: {t}",
                         "Please repeat {t}", "{t} - repeat that", "Type this back to me: {t}"]).format(t=text)
        steps = [self.assistant(text, None, "The user wants the text repeated exactly. No tool is needed.")]
        return user, steps, {"tool": None, "arguments": None, "answer": text}

    TASKS = [("task_time_now", 16), ("task_time_convert", 20), ("task_time_local", 3), ("task_time_two", 5),
             ("task_code", 16), ("task_fetch", 24), ("task_fetch_count", 6), ("task_chat", 10)]
    TRAIN_ONLY_TASKS = [("task_echo", 34)]

    def conversation(self, task=None):
        r = self.rng
        tasks = self.TASKS + (self.TRAIN_ONLY_TASKS if self.split == "train" else [])
        names = [n for n, _ in tasks]
        weights = [w for _, w in tasks]
        task = task or r.choices(names, weights)[0]
        mode = r.choices(["think", "hard_off", "soft_off"], [5, 3, 2])[0]
        self.thinking = mode == "think"
        self.local = self.local_zone()
        user, steps, expect = getattr(self, task)()
        user = self.augment(user)
        if mode == "soft_off":
            user = f"{user} /no_think"
        messages = []
        if r.random() < 0.9:
            messages.append({"role": "system", "content": SYSTEM})
        if self.split == "train" and r.random() < 0.15:
            prev_user, prev_steps, _ = getattr(self, r.choice(names))()
            messages.append({"role": "user", "content": prev_user})
            messages.append({k: v for k, v in prev_steps[-1].items() if k != "reasoning_content"})
        messages.append({"role": "user", "content": user})
        messages.extend(steps)
        tools = self.tools_for(task)
        return {"task": task, "enable_thinking": mode != "hard_off", "local_timezone": self.local,
                "tools": tools, "messages": messages, "expect": expect}

    def augment(self, text):
        """Surface variation (greetings, politeness, context, case, punctuation) on top of the templates."""
        r = self.rng
        if self.split == "train" and r.random() < 0.2:
            text = r.choice(CONTEXT) + " " + text
        text = r.choice(["", "", "", "", "Hey, ", "Hi! ", "Quick question: ", "Please, ", "Could you help? "]) + text
        text += r.choice(["", "", "", "", " Thanks.", " Thank you!", " please", " :)"])
        if r.random() < 0.2:
            text = text.lower()
        if r.random() < 0.15:
            text = text.rstrip("?.!")
        return text

    def tools_for(self, task):
        tools = [dict(t) for t in self.tools]
        for t in tools:
            if t["name"] in ("get_current_time", "convert_time"):
                t["parameters"] = json.loads(json.dumps(t["parameters"]).replace("'UTC'", f"'{self.local}'"))
        if self.split == "train" and self.rng.random() < 0.25:
            self.rng.shuffle(tools)
        return [{"type": "function", "function": t} for t in tools]


def page_html(heading, sentences):
    title = heading or " ".join(sentences[0].split()[:3])
    h1 = f"<h1>{heading}</h1>" if heading else ""
    paragraphs = "".join(f"<p>{s}</p>" for s in sentences)
    return (f"<html><head><title>{title} | Site</title></head><body><nav><a href='/'>Home</a></nav>"
            f"<main>{h1}{paragraphs}</main><footer>Contact us</footer></body></html>")


def eval_case(conv):
    """One prompt for `qwen3-agent eval`: the last user message, what must be called, and the pages
    fetch may ask for (served to the fetch server through a local proxy)."""
    user = [m for m in conv["messages"] if m["role"] == "user"][-1]["content"]
    pages = {}
    for m in conv["messages"]:
        if m["role"] == "tool" and m["content"].startswith("Contents of "):
            url, body = m["content"][len("Contents of "):].split(":\n", 1)
            blocks = body.split("\n\n")
            heading = blocks[0][2:] if blocks[0].startswith("# ") else None
            pages[url] = page_html(heading, blocks[1:] if heading else blocks)
    return {"task": conv["task"], "prompt": user, "expect": conv["expect"], "pages": pages}


def hash_pair(a, b):
    return sum((i + 1) * ord(c) for i, c in enumerate(a + "|" + b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["train", "eval"], required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tools", default=str(HERE / "tools.json"))
    ap.add_argument("--cases", action="store_true", help="write eval cases (prompt, expectation, pages) instead")
    args = ap.parse_args()
    tools = json.loads(Path(args.tools).read_text())
    gen = Gen(args.split, random.Random(args.seed), tools)
    for _ in range(args.count):
        conv = gen.conversation()
        if args.cases:
            # Fetched URLs must be plain http: the eval serves them through a local proxy.
            # "What time is it?" depends on the host's zone, which the case cannot know.
            while conv["task"] == "task_time_local" or any(u.startswith("https") for u in eval_case(conv)["pages"]):
                conv = gen.conversation()
            conv = eval_case(conv)
        sys.stdout.write(json.dumps(conv, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
