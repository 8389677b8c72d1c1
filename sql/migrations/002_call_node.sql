-- Which node holds a call's dialogs: a code redeemed on another node is forwarded there.
ALTER TABLE calls ADD COLUMN node TEXT NOT NULL DEFAULT '';
