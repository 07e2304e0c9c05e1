//! A fixture generator: 5,000 support-bot logs whose requests are
//! paraphrases. Sixteen intents (four per `function`), each asked in eight
//! wordings that share few words, framed by greetings and sign-offs that
//! all intents share, with order numbers varied, and twice more in words
//! no other log uses; a cluster of failures; and planted rare successes,
//! one or two per function, each about something no other log is about
//! (plus rare failures, which `anomaly` must pass over).
//!
//! Meaning-aware embeddings put each intent in one cluster and the rare
//! successes far from everything. A bag of words (the `sim` backend's
//! hashed one) sees wordings and frames: its clusters are those, so its
//! `steady` picks are not one per intent, and the once-used wordings of
//! common requests are as lonely to it as the rare successes.
//! Deterministic: the same logs every call.

/// One generated log, with what it was generated as.
pub struct Log {
    pub id: String,
    pub function: &'static str,
    /// The intent (`billing/refund`), `rare/<n>` for a planted rare log, or
    /// `fail/<n>` for the failing cluster.
    pub truth: String,
    pub input: String,
    pub output: String,
    pub status: &'static str,
}

impl Log {
    /// The log as a JSONL line (the fields `extract` reads).
    pub fn json(&self) -> String {
        format!(
            "{{\"id\": {}, \"function\": {}, \"input\": {}, \"output\": {}, \"status\": {}}}",
            quote(&self.id),
            quote(self.function),
            quote(&self.input),
            quote(&self.output),
            quote(self.status)
        )
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A function's intents: (name, wordings, rare wordings, answer); `{n}`
/// is an order number. The wordings of an intent say the same thing in
/// other words; each is used by ~37 logs. The rare wordings say it once
/// each, in words no other log uses: the same request to a reader of
/// meaning, an outlier to a bag of words.
type Intent = (&'static str, [&'static str; 8], [&'static str; 2], &'static str);

pub const FUNCTIONS: [(&str, [Intent; 4]); 4] = [
    (
        "billing",
        [
            (
                "refund",
                [
                    "I want a refund for order {n}",
                    "please give me my money back for order {n}",
                    "can I be reimbursed for order {n}",
                    "refund order {n} please",
                    "I would like to get repaid for purchase {n}",
                    "return my payment for order {n}",
                    "how do I get my money back on {n}",
                    "I am asking for a refund on order {n}",
                ],
                [
                    "I sent the item back, so I expect my money returned",
                    "reimburse my purchase, it went back to your warehouse",
                ],
                "I issued a refund for the order; it reaches your card within 5 business days.",
            ),
            (
                "invoice",
                [
                    "send me the invoice for order {n}",
                    "I need a receipt for purchase {n}",
                    "where can I download the bill for order {n}",
                    "please email me an invoice for {n}",
                    "can I get a PDF receipt of order {n}",
                    "I require proof of purchase for order {n}",
                    "my accountant needs the invoice of {n}",
                    "how do I obtain a billing statement for order {n}",
                ],
                ["resend the invoice document for my records", "I lost the invoice, can I have another copy"],
                "I emailed the invoice as a PDF; you can also download it under Orders.",
            ),
            (
                "payment_method",
                [
                    "how do I change the credit card on my account",
                    "I want to update my payment card",
                    "my card expired, where do I enter the new one",
                    "replace the saved card in my profile",
                    "can I switch to a different bank card for payments",
                    "update my card details please",
                    "I got a new credit card, how do I add it",
                    "change the card you charge me with",
                ],
                [
                    "my old Visa expired so I have a replacement card to put on file",
                    "substitute my Mastercard with the replacement the bank mailed",
                ],
                "You can change your card under Account > Payment; the new card is used from now on.",
            ),
            (
                "double_charge",
                [
                    "I was charged twice for order {n}",
                    "you billed me two times for {n}",
                    "my card shows a duplicate payment for order {n}",
                    "order {n} was debited twice",
                    "there are two identical charges for {n} on my statement",
                    "I paid double for order {n}",
                    "why was I billed twice for purchase {n}",
                    "the payment for {n} went through two times",
                ],
                [
                    "your system debited me a second time for one purchase",
                    "I spotted a repeated transaction from your shop",
                ],
                "I see the duplicate charge and reversed the second one; it disappears within 3 days.",
            ),
        ],
    ),
    (
        "shipping",
        [
            (
                "where_is_order",
                [
                    "where is my order {n}",
                    "order {n} has not arrived yet",
                    "can you track my order {n}",
                    "when will order {n} be delivered",
                    "my order {n} is late",
                    "what is the status of my order {n}",
                    "I am still waiting for order {n}",
                    "has order {n} shipped yet",
                ],
                ["it's been ten days and the shipment still hasn't come", "any news on when my shipment arrives"],
                "Your parcel is with the carrier and arrives within 2 days; the tracking link is in your email.",
            ),
            (
                "change_address",
                [
                    "I need to change the delivery address of order {n}",
                    "please update the shipping address for order {n}",
                    "can I correct the address on order {n}",
                    "I moved, the address for order {n} must be changed",
                    "modify the delivery address of parcel {n}",
                    "the address on order {n} is wrong, please fix it",
                    "use my new address for order {n} instead",
                    "change the address order {n} is delivered to",
                ],
                [
                    "I've relocated, kindly reroute the shipment",
                    "I need the package delivered to my office address instead",
                ],
                "I updated the delivery address; the carrier has the new one.",
            ),
            (
                "damaged",
                [
                    "order {n} arrived broken",
                    "the item in package {n} was damaged",
                    "my parcel {n} came smashed",
                    "the product from order {n} is cracked",
                    "everything in box {n} was destroyed in transit",
                    "order {n} was delivered in pieces",
                    "the contents of {n} were broken on arrival",
                    "I received order {n} damaged",
                ],
                [
                    "the contents were shattered when I unpacked them",
                    "the item was ruined during delivery, it's all broken",
                ],
                "I am sorry it arrived damaged; a replacement ships today and you can keep the broken one.",
            ),
            (
                "shipping_cost",
                [
                    "how much does shipping cost",
                    "what is the delivery fee",
                    "how expensive is postage",
                    "what do you charge for delivery",
                    "is shipping free",
                    "how much will I pay to have it delivered",
                    "what are your shipping rates",
                    "tell me the price of delivery",
                ],
                ["what's the postage fee to Norway", "do you levy a charge for sending goods abroad"],
                "Standard delivery is free over $50; express costs $12 and arrives the next day.",
            ),
        ],
    ),
    (
        "account",
        [
            (
                "password",
                [
                    "I forgot my password",
                    "how do I reset my password",
                    "I can't remember my login password",
                    "please send me a password reset link",
                    "my password does not work anymore",
                    "I need a new password for my account",
                    "help me recover my forgotten password",
                    "how can I change my lost password",
                ],
                ["I can no longer recall the secret I use to sign in", "my passphrase isn't accepted anymore"],
                "I sent a reset link to your email; it is valid for one hour.",
            ),
            (
                "delete_account",
                [
                    "please delete my account",
                    "I want to close my account permanently",
                    "remove my account and all my data",
                    "how do I cancel my account for good",
                    "deactivate and erase my profile",
                    "I would like my account to be deleted",
                    "terminate my user account",
                    "shut down my account forever",
                ],
                [
                    "wipe my profile and every trace of my data",
                    "I wish to permanently leave your service and be forgotten",
                ],
                "I scheduled your account for deletion; all your data is erased within 30 days.",
            ),
            (
                "change_email",
                [
                    "how do I change the email address on my account",
                    "I want to update my email",
                    "replace my account email with a new one",
                    "please switch my login email address",
                    "my email changed, update it in my profile",
                    "set a different email for my account",
                    "can I use another email address to sign in",
                    "edit the email linked to my account",
                ],
                [
                    "please use my new email for everything from now on",
                    "swap the contact address where you send messages",
                ],
                "I updated your email; please confirm it with the link we just sent.",
            ),
            (
                "two_factor",
                [
                    "I don't receive the two-factor code",
                    "the verification code never arrives",
                    "my 2FA code is not coming by SMS",
                    "I am not getting the security code to log in",
                    "the one-time login code does not arrive",
                    "no authentication code is sent to my phone",
                    "I never get the text with my sign-in code",
                    "the two-step verification message is missing",
                ],
                ["the six-digit SMS never shows up on my mobile", "authenticator prompts fail to reach my handset"],
                "I reset two-factor authentication; set it up again under Account > Security.",
            ),
        ],
    ),
    (
        "product",
        [
            (
                "compatibility",
                [
                    "does the speaker work with an iPhone",
                    "is the speaker compatible with iOS",
                    "can I connect the speaker to my iPhone",
                    "will the speaker pair with an Apple phone",
                    "does the speaker support iPhones",
                    "is it possible to use the speaker with my iPhone",
                    "can an iPhone play music on the speaker",
                    "will my iPhone connect to this speaker",
                ],
                ["can Apple handsets stream audio to this speaker", "pairing with iOS devices, supported"],
                "Yes, the speaker works with every iPhone over Bluetooth; pair it in Settings > Bluetooth.",
            ),
            (
                "warranty",
                [
                    "how long is the warranty",
                    "what does the guarantee cover",
                    "is my device still under warranty",
                    "how many years of warranty do I get",
                    "what is the warranty period",
                    "does the product come with a guarantee",
                    "for how long is it covered by warranty",
                    "tell me about the warranty terms",
                ],
                ["is it covered if it stops working after a year", "what protection against defects comes included"],
                "The product has a two-year warranty covering defects; start a claim under Orders.",
            ),
            (
                "in_stock",
                [
                    "when will the blue kettle be back in stock",
                    "is the blue kettle available again",
                    "the blue kettle is sold out, will you restock it",
                    "do you have the blue kettle in stock",
                    "when can I buy the blue kettle again",
                    "will the blue kettle be restocked soon",
                    "notify me when the blue kettle is available",
                    "is the blue kettle out of stock",
                ],
                ["any restock date for the blue kettle", "I'd buy the blue kettle if it were available, when"],
                "The blue kettle is back in stock next week; I set an alert to email you when it is.",
            ),
            (
                "instructions",
                [
                    "how do I set up the coffee machine",
                    "where is the manual for the coffee machine",
                    "how do I install my new coffee machine",
                    "I need instructions for the coffee machine",
                    "what are the setup steps for the coffee machine",
                    "how do I get the coffee machine running",
                    "explain how to assemble the coffee machine",
                    "is there a guide for setting up the coffee machine",
                ],
                [
                    "configuring the coffee machine out of the box, guidance please",
                    "walk me through first use of the coffee machine",
                ],
                "The setup guide is at example.com/setup: fill the tank, hold the power button, run one rinse.",
            ),
        ],
    ),
];

/// The planted rare logs: (function, request, answer, succeeded).
pub const RARE: [(&str, &str, &str, bool); 8] = [
    (
        "billing",
        "my late grandmother's subscription is still billed to her estate, the lawyer needs a letter",
        "I am sorry for your loss; I stopped the billing and emailed a letter for the estate's lawyer.",
        true,
    ),
    (
        "shipping",
        "can the courier hand the parcel to my tortoise sitter, she only visits on Tuesdays at dawn",
        "I noted Tuesday early-morning delivery to your sitter with the carrier.",
        true,
    ),
    (
        "account",
        "I am a journalist and need to verify the identity behind a review for an investigation",
        "We cannot share reviewers' identities; I forwarded your request to our legal team.",
        true,
    ),
    (
        "product",
        "will the device survive a research expedition to Antarctica at minus forty degrees",
        "It is rated to minus twenty; for the expedition, the arctic edition is rated to minus fifty.",
        true,
    ),
    (
        "product",
        "could you translate the safety leaflet into Braille for a blind customer",
        "Yes: a Braille edition of the leaflet is posted to you this week, free of charge.",
        true,
    ),
    (
        "shipping",
        "my dog ate the delivery notice, what did it say",
        "The notice said the parcel waits at the post office on Main Street until Friday.",
        false,
    ),
    (
        "billing",
        "does paying by cheque from a Swiss bank count as a donation for tax purposes",
        "Payments by cheque are not donations; your invoice is a receipt for a purchase.",
        false,
    ),
    (
        "account",
        "a hacker changed my name on the profile to a rude word",
        "I restored your name, locked the account and sent you a link to set a new password.",
        true,
    ),
];

const OPENERS: [&str; 8] =
    ["", "Hi, ", "Hello team, ", "Good morning. ", "Hey there! ", "Quick question: ", "Dear support, ", "Urgent: "];
const CLOSERS: [&str; 5] = ["", " Thanks.", " Thank you in advance!", " Please help.", " Cheers"];
/// The failing cluster: the bot crashed on these (a dense cluster of
/// failures, never an example).
const FAILING: [&str; 5] =
    ["asdf asdf test test", "hello?", "hello??", "test message please ignore", "testing testing"];

/// Logs per intent: 16 intents × 300, the 150 failures and the 8 rare
/// ones make 5,000 minus 8; the failures take the rest.
pub const PER_INTENT: usize = 300;

/// The ids of the planted rare successes.
pub fn rare_successes() -> Vec<String> {
    RARE.iter().enumerate().filter(|(_, r)| r.3).map(|(i, _)| format!("rare-{i}")).collect()
}

/// The 5,000 logs, in a fixed order.
pub fn logs() -> Vec<Log> {
    let mut rng = Rng(0x5eed_f10e);
    let mut out = Vec::new();
    for (function, intents) in FUNCTIONS {
        for (name, wordings, rare_wordings, answer) in intents {
            for k in 0..PER_INTENT {
                let rare_wording = (k + rare_wordings.len()).checked_sub(PER_INTENT).map(|r| rare_wordings[r]);
                let wording = rare_wording.unwrap_or(wordings[k % wordings.len()]);
                let text = wording.replace("{n}", &format!("#{}", 10_000 + rng.below(90_000)));
                let opener = OPENERS[rng.below(OPENERS.len())];
                let closer = CLOSERS[rng.below(CLOSERS.len())];
                let end = [".", "", "?", "!"][rng.below(4)];
                let mut input = format!("{opener}{text}{end}{closer}");
                if opener.is_empty() || opener.ends_with(": ") {
                    input = capitalize(&input);
                }
                // One in 25 got a bad answer: failures inside the clusters too.
                let mut status = if rng.below(25) == 0 { "FAIL" } else { "SUCCESS" };
                if rare_wording.is_some() {
                    // Unframed, and answered well: not a rare success all the same.
                    (input, status) = (capitalize(&text), "SUCCESS");
                }
                out.push(Log {
                    id: format!("{function}-{name}-{k:03}"),
                    function,
                    truth: format!("{function}/{name}"),
                    input,
                    output: answer.to_string(),
                    status,
                });
            }
        }
    }
    for (i, (function, input, output, ok)) in RARE.iter().enumerate() {
        out.push(Log {
            id: format!("rare-{i}"),
            function,
            truth: format!("rare/{i}"),
            input: input.to_string(),
            output: output.to_string(),
            status: if *ok { "SUCCESS" } else { "FAIL" },
        });
    }
    let mut k = 0;
    while out.len() < 5_000 {
        let function = FUNCTIONS[k % FUNCTIONS.len()].0;
        out.push(Log {
            id: format!("fail-{k:03}"),
            function,
            truth: "fail".into(),
            input: FAILING[k % FAILING.len()].to_string(),
            output: "Internal error: the assistant did not answer.".into(),
            status: "FAIL",
        });
        k += 1;
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A small deterministic generator (splitmix64): the fixture needs no
/// `rand`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}
