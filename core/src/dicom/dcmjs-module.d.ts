// dcmjs ships no type declarations; modules that use it describe the small part they need.
declare module 'dcmjs';
