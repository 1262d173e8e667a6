"""The law-enforcement inbox: what an officer does with the referrals made available to
their agency (``tipline.referrals.service``), exports of a referral (``export``) and the
reminder mails of overdue acknowledgements (``reminders``)."""
